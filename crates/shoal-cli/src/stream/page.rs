//! The status page, its JSON and the M3U playlist of `shoal stream`.

use serde_json::{json, Value};
use shoal::{Phase, TorrentHandle};

use super::http::ServedFile;
use crate::html::escape;

/// What the session knows of the network besides the torrent: the DHT's size, whether the
/// router forwards our port.
#[derive(Clone, Default)]
pub struct Network {
    pub dht: Option<shoal::dht::Dht>,
    pub port_mapping: Option<tokio::sync::watch::Receiver<shoal::port_mapping::MappingState>>,
}

impl Network {
    pub fn of(session: &shoal::Session) -> Network {
        Network { dht: session.dht().cloned(), port_mapping: session.watch_port_mapping() }
    }
}

/// The torrent's state as `/api/status` reports it.
pub fn status_json(handle: &TorrentHandle, files: &[ServedFile], network: &Network) -> Value {
    let status = handle.status();
    let s = &status.stats;
    json!({
        "name": handle.name(),
        "info_hash": handle.info_hash().to_hex(),
        "phase": crate::output::phase_name(&status.phase),
        "error": match &status.phase { Phase::Failed(e) => Some(e.clone()), _ => None },
        "downloaded": s.downloaded,
        "uploaded": s.uploaded,
        "download_rate": s.download_rate,
        "upload_rate": s.upload_rate,
        "peers": s.peers,
        "peers_by_source": s.peers_by_source,
        "dht_nodes": network.dht.as_ref().map(shoal::dht::Dht::node_count),
        "port_mapping": crate::transfer::port_mapping_json(
            network.port_mapping.as_ref().map(|w| w.borrow().clone()).as_ref()
        ),
        "webrtc_peers": status.webrtc_peers,
        "peers_by_transport": status.peers_by_transport,
        "encrypted_peers": status.encrypted_peers,
        "seeds": s.seeds,
        "pieces_have": s.pieces_have,
        "pieces_total": s.pieces_total,
        "bytes_left": s.bytes_left,
        "readers": status.readers,
        "web_seeds": crate::transfer::web_seeds_json(&status),
        "memory": status.memory.map(|m| json!({
            "resident": m.resident, "peak": m.peak, "budget": m.budget,
        })),
        "files": files.iter().map(file_json).collect::<Vec<_>>(),
    })
}

pub fn file_json(f: &ServedFile) -> Value {
    json!({
        "index": f.index,
        "path": f.path,
        "length": f.length,
        "mime": f.content_type,
        "url": f.url_path,
    })
}

/// An extended M3U playlist with an absolute URL per file.
pub fn m3u(base: &str, files: &[ServedFile]) -> String {
    let mut out = String::from("#EXTM3U\n");
    for f in files {
        // Line breaks in a name would break the format; a title is only a label.
        let title: String = f.path.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        out.push_str(&format!("#EXTINF:-1,{title}\n{base}{}\n", f.url_path));
    }
    out
}

/// A small page: the torrent's progress (refreshed from `/api/status`) and its files.
pub fn status_html(handle: &TorrentHandle, files: &[ServedFile]) -> String {
    let name = escape(&handle.name().unwrap_or_else(|| handle.info_hash().to_hex()));
    let mut rows = String::new();
    for f in files {
        rows.push_str(&format!(
            "<tr><td><a href=\"{url}\">{path}</a></td><td>{size}</td><td>{mime}</td></tr>\n",
            url = escape(&f.url_path),
            path = escape(&f.path),
            size = crate::output::human_size(f.length),
            mime = escape(f.content_type),
        ));
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name} · Shoal</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ padding: .3em .6em; text-align: left; }}
tr:nth-child(even) {{ background: #f4f4f4; }} progress {{ width: 100%; height: 1.2em; }}
#stats {{ color: #444; }}
</style></head>
<body>
<h1>{name}</h1>
<progress id="progress" max="1" value="0"></progress>
<p id="stats">…</p>
<p><a href="/playlist.m3u">Playlist (M3U)</a> · <a href="/api/status">Status as JSON</a></p>
<table><tr><th>File</th><th>Size</th><th>Type</th></tr>
{rows}</table>
<script>
const size = (n) => {{
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; while (n >= 1024 && i < units.length - 1) {{ n /= 1024; i++; }}
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}};
async function refresh() {{
  try {{
    const s = await (await fetch('/api/status')).json();
    const p = document.getElementById('progress');
    p.max = Math.max(1, s.pieces_total); p.value = s.pieces_have;
    const counts = (by) => Object.entries(by || {{}}).map(([k, n]) => `${{k}} ${{n}}`).join(', ');
    const sources = s.peers ? `${{counts(s.peers_by_source)}}; ${{counts(s.peers_by_transport)}}; ${{s.encrypted_peers}} encrypted` : '';
    let text = `${{s.phase}} · ${{s.pieces_have}}/${{s.pieces_total}} pieces · ${{s.peers}} peers${{sources ? ` (${{sources}})` : ''}} · ` +
      `↓ ${{size(s.download_rate)}}/s · ↑ ${{size(s.upload_rate)}}/s · ${{s.readers}} readers`;
    if (s.dht_nodes != null) text += ` · DHT ${{s.dht_nodes}} nodes`;
    if (s.port_mapping && s.port_mapping.mapped) text += ` · reachable at ${{s.port_mapping.tcp}}`;
    if (s.memory) text += ` · memory ${{size(s.memory.resident)}} of ${{size(s.memory.budget)}}`;
    if (s.error) text += ` · error: ${{s.error}}`;
    document.getElementById('stats').textContent = text;
  }} catch (e) {{
    document.getElementById('stats').textContent = 'Shoal is not responding';
  }}
}}
refresh(); setInterval(refresh, 1000);
</script>
</body></html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> ServedFile {
        ServedFile {
            index: 0,
            path: path.into(),
            length: 5,
            content_type: "video/mp4",
            url_path: "/files/0/a.mp4".into(),
        }
    }

    #[test]
    fn playlist_has_one_entry_per_file_and_no_stray_line_breaks() {
        let text = m3u("http://h:1", &[file("dir/a.mp4"), file("evil\nname.mp4")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#EXTM3U");
        assert_eq!(lines[1], "#EXTINF:-1,dir/a.mp4");
        assert_eq!(lines[2], "http://h:1/files/0/a.mp4");
        assert_eq!(lines[3], "#EXTINF:-1,evil name.mp4");
        assert_eq!(lines.len(), 5);
    }
}
