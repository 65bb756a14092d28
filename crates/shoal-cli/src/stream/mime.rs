//! Content types of the files players ask for, by file extension.
//!
//! Players (and browsers in particular) decide how to handle a response from its
//! `Content-Type`, and a torrent carries no types, so the extension is all there is.

/// What a file is, for picking the file to play by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Video,
    Audio,
    Subtitles,
    Other,
}

/// (extension, content type, kind); extensions lower-case.
const TYPES: &[(&str, &str, MediaKind)] = &[
    ("mp4", "video/mp4", MediaKind::Video),
    ("m4v", "video/mp4", MediaKind::Video),
    ("mkv", "video/x-matroska", MediaKind::Video),
    ("webm", "video/webm", MediaKind::Video),
    ("mov", "video/quicktime", MediaKind::Video),
    ("avi", "video/x-msvideo", MediaKind::Video),
    ("wmv", "video/x-ms-wmv", MediaKind::Video),
    ("flv", "video/x-flv", MediaKind::Video),
    ("mpg", "video/mpeg", MediaKind::Video),
    ("mpeg", "video/mpeg", MediaKind::Video),
    ("ts", "video/mp2t", MediaKind::Video),
    ("m2ts", "video/mp2t", MediaKind::Video),
    ("ogv", "video/ogg", MediaKind::Video),
    ("3gp", "video/3gpp", MediaKind::Video),
    ("mp3", "audio/mpeg", MediaKind::Audio),
    ("m4a", "audio/mp4", MediaKind::Audio),
    ("aac", "audio/aac", MediaKind::Audio),
    ("flac", "audio/flac", MediaKind::Audio),
    ("ogg", "audio/ogg", MediaKind::Audio),
    ("oga", "audio/ogg", MediaKind::Audio),
    ("opus", "audio/ogg", MediaKind::Audio),
    ("wav", "audio/wav", MediaKind::Audio),
    ("weba", "audio/webm", MediaKind::Audio),
    ("mka", "audio/x-matroska", MediaKind::Audio),
    ("srt", "application/x-subrip", MediaKind::Subtitles),
    ("vtt", "text/vtt", MediaKind::Subtitles),
    ("ass", "text/x-ssa", MediaKind::Subtitles),
    ("ssa", "text/x-ssa", MediaKind::Subtitles),
    ("sub", "text/plain", MediaKind::Subtitles),
    ("txt", "text/plain; charset=utf-8", MediaKind::Other),
    ("nfo", "text/plain; charset=utf-8", MediaKind::Other),
    ("html", "text/html; charset=utf-8", MediaKind::Other),
    ("jpg", "image/jpeg", MediaKind::Other),
    ("jpeg", "image/jpeg", MediaKind::Other),
    ("png", "image/png", MediaKind::Other),
    ("gif", "image/gif", MediaKind::Other),
    ("webp", "image/webp", MediaKind::Other),
    ("pdf", "application/pdf", MediaKind::Other),
];

fn lookup(name: &str) -> Option<&'static (&'static str, &'static str, MediaKind)> {
    let (_, ext) = name.rsplit_once('.')?;
    TYPES.iter().find(|(e, _, _)| e.eq_ignore_ascii_case(ext))
}

/// The `Content-Type` for a file name.
pub fn content_type(name: &str) -> &'static str {
    lookup(name).map_or("application/octet-stream", |t| t.1)
}

pub fn kind(name: &str) -> MediaKind {
    lookup(name).map_or(MediaKind::Other, |t| t.2)
}

/// The file to play when none is named: the largest video, else the largest audio file, else
/// the largest file. `files` are (name, length); `None` when there are none.
pub fn default_file<'a>(files: impl IntoIterator<Item = (&'a str, u64)>) -> Option<usize> {
    let rank = |kind: MediaKind| match kind {
        MediaKind::Video => 2,
        MediaKind::Audio => 1,
        _ => 0,
    };
    files
        .into_iter()
        .enumerate()
        .max_by_key(|(i, (name, len))| (rank(kind(name)), *len, std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_extension() {
        assert_eq!(content_type("a/Movie.MP4"), "video/mp4");
        assert_eq!(content_type("x.webm"), "video/webm");
        assert_eq!(content_type("x.mkv"), "video/x-matroska");
        assert_eq!(content_type("song.mp3"), "audio/mpeg");
        assert_eq!(content_type("subs.en.srt"), "application/x-subrip");
        assert_eq!(content_type("subs.vtt"), "text/vtt");
        assert_eq!(content_type("README"), "application/octet-stream");
        assert_eq!(content_type("archive.tar.zst"), "application/octet-stream");
    }

    #[test]
    fn default_is_the_largest_video_then_audio() {
        let files = [("sample.mkv", 10), ("movie.mp4", 900), ("extras.zip", 5000)];
        assert_eq!(default_file(files), Some(1));
        let audio = [("cover.jpg", 100), ("a.flac", 50), ("b.mp3", 60)];
        assert_eq!(default_file(audio), Some(2));
        assert_eq!(default_file([("a.bin", 1), ("b.bin", 2)]), Some(1));
        assert_eq!(default_file(std::iter::empty()), None);
    }
}
