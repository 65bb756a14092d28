//! Throwaway certificates for tests of TLS listeners (`https://`, `wss://`), made by Debian's
//! `openssl`, valid for one day: a CA of its own and a server certificate it signed for
//! 127.0.0.1 and localhost. Native clients trust the CA through `SSL_CERT_FILE`; Chromium is
//! told to ignore certificate errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::paths::require_tool;

/// The files [`test_certificate`] wrote.
#[derive(Clone, Debug)]
pub struct TestCert {
    /// The CA's certificate (PEM): what a client trusts.
    pub ca: PathBuf,
    /// The server's certificate (PEM), signed by the CA.
    pub cert: PathBuf,
    /// The server's private key (PEM, unencrypted).
    pub key: PathBuf,
}

/// Writes a CA and a server certificate for 127.0.0.1 and localhost into `dir`.
pub fn test_certificate(dir: &Path) -> Result<TestCert> {
    let openssl = require_tool("openssl")?;
    let files =
        TestCert { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    let ca_key = dir.join("ca-key.pem");
    let csr = dir.join("server.csr");
    let ext = dir.join("server.ext");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
        .map_err(|e| Error::io("cannot write the certificate extensions", e))?;
    let run = |args: &[&std::ffi::OsStr]| -> Result<()> {
        let out = Command::new(&openssl)
            .args(args)
            .output()
            .map_err(|e| Error::io("cannot run openssl", e))?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::Setup(format!(
            "openssl could not make a test certificate: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    run(&[
        os("req"),
        os("-x509"),
        os("-newkey"),
        os("rsa:2048"),
        os("-nodes"),
        os("-days"),
        os("1"),
        os("-subj"),
        os("/CN=Shoal test CA"),
        os("-keyout"),
        ca_key.as_os_str(),
        os("-out"),
        files.ca.as_os_str(),
    ])?;
    run(&[
        os("req"),
        os("-newkey"),
        os("rsa:2048"),
        os("-nodes"),
        os("-subj"),
        os("/CN=localhost"),
        os("-keyout"),
        files.key.as_os_str(),
        os("-out"),
        csr.as_os_str(),
    ])?;
    run(&[
        os("x509"),
        os("-req"),
        os("-in"),
        csr.as_os_str(),
        os("-CA"),
        files.ca.as_os_str(),
        os("-CAkey"),
        ca_key.as_os_str(),
        os("-CAcreateserial"),
        os("-days"),
        os("1"),
        os("-extfile"),
        ext.as_os_str(),
        os("-out"),
        files.cert.as_os_str(),
    ])?;
    Ok(files)
}
