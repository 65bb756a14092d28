//! The snippet an operator pastes into a page of their own to play a file of `shoal serve`.
//!
//! It is an `<iframe>` of the app's `embed.html`, as PeerTube's and YouTube's embeds are: the
//! player has to run on this server's origin, because the Service Worker that turns the
//! `<video>`'s requests into torrent reads can only be registered by a page of the origin it
//! serves, and a snippet runs on the operator's. Inside, `web/embed.js` plays the file through
//! Shoal (peers over WebRTC, this server as web seed and tracker, both in the magnet) and over
//! plain HTTP from this server's web seed route where Shoal cannot run (no WebRTC, no Service
//! Worker, no metadata in time).

use shoal_proto::metainfo::Metainfo;
use shoal_proto::percent;

use crate::html::escape;

/// One file's player.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Embed {
    /// The file's path in the torrent, `/`-separated.
    pub path: String,
    /// The file over plain HTTP: the fallback.
    pub http_url: String,
    /// The player page for this file.
    pub player_url: String,
    /// The `<iframe>` to paste.
    pub html: String,
}

/// The players of every file of the torrent served as number `index`, whose web seed is
/// `{base}/webseed/{index}/`.
pub fn embeds(base: &str, index: usize, meta: &Metainfo, magnet: &str) -> Vec<Embed> {
    meta.info
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.padding)
        .map(|(file, f)| {
            // The web seed's URL of the file: BEP 19 appends the torrent's name and the
            // file's path, each component escaped.
            let mut http_url = format!("{base}/webseed/{index}/");
            for (i, component) in f.path.iter().enumerate() {
                if i > 0 {
                    http_url.push('/');
                }
                percent::encode_into(component.as_bytes(), &mut http_url);
            }
            let player_url = format!(
                "{base}/embed.html#source={}&file={file}&fallback={}",
                percent::encode(magnet.as_bytes()),
                percent::encode(http_url.as_bytes()),
            );
            let title = f.path.last().map_or("", String::as_str);
            let html = format!(
                "<iframe src=\"{}\" title=\"{}\" width=\"640\" height=\"360\" \
                 allow=\"autoplay; fullscreen; picture-in-picture\" allowfullscreen \
                 style=\"border:0\"></iframe>",
                escape(&player_url),
                escape(title),
            );
            Embed { path: f.path.join("/"), http_url, player_url, html }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::create::TorrentBuilder;

    fn meta(name: &str) -> Metainfo {
        let mut hasher = TorrentBuilder::single_file(name, 5).unwrap().start().unwrap();
        hasher.update(b"hello").unwrap();
        Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap()
    }

    #[test]
    fn a_file_with_an_awkward_name_gets_a_safe_snippet() {
        let name = "a \"b\" <c> & d.mp4";
        let meta = meta(name);
        let magnet = "magnet:?xt=urn:btih:00&dn=x";
        let embeds = embeds("http://h:1", 3, &meta, magnet);
        assert_eq!(embeds.len(), 1);
        let e = &embeds[0];
        assert_eq!(e.path, name);
        assert_eq!(e.http_url, "http://h:1/webseed/3/a%20%22b%22%20%3Cc%3E%20%26%20d.mp4");
        assert!(e.player_url.starts_with("http://h:1/embed.html#source=magnet%3A%3Fxt%3D"));
        assert!(e.player_url.contains("&file=0&fallback=http%3A%2F%2Fh%3A1%2Fwebseed%2F3%2F"));
        // Nothing in the markup can close the attribute or the tag early.
        let inside = e.html.strip_prefix("<iframe ").and_then(|s| s.strip_suffix("></iframe>"));
        let inside = inside.expect("one iframe");
        assert!(!inside.contains('<') && !inside.contains('>'), "{inside}");
        assert_eq!(inside.matches('"').count(), 2 * 6, "six attributes with values: {inside}");
        assert!(inside.contains("title=\"a &quot;b&quot; &lt;c&gt; &amp; d.mp4\""), "{inside}");
        assert!(inside.contains("%3A00%26dn%3Dx&amp;file=0&amp;fallback="), "{inside}");
    }
}
