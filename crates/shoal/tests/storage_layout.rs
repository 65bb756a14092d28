//! Piece/file geometry: offsets, piece lengths and the mapping of piece ranges onto files.

use shoal::storage::{FileSpec, Segment, StorageError, StorageLayout};

fn seg(file_index: usize, file_offset: u64, len: u32, range_offset: u32) -> Segment {
    Segment { file_index, file_offset, len, range_offset }
}

/// a:5, empty:0, b:3, c:2, d:10 with 16-byte pieces: piece 0 spans four files, the last piece
/// is 4 bytes.
fn sample() -> StorageLayout {
    StorageLayout::new(
        16,
        vec![
            FileSpec::new(&["t", "a"], 5),
            FileSpec::new(&["t", "empty"], 0),
            FileSpec::new(&["t", "sub", "b"], 3),
            FileSpec::new(&["t", "c"], 2),
            FileSpec::new(&["t", "d"], 10),
        ],
    )
    .unwrap()
}

#[test]
fn totals_and_piece_lengths() {
    let layout = sample();
    assert_eq!(layout.total_length(), 20);
    assert_eq!(layout.piece_count(), 2);
    assert_eq!(layout.piece_len(0).unwrap(), 16);
    assert_eq!(layout.piece_len(1).unwrap(), 4);
    assert!(matches!(
        layout.piece_len(2),
        Err(StorageError::PieceOutOfRange { piece: 2, count: 2 })
    ));
    assert_eq!(layout.file_range(4), Some(10..20));
    assert_eq!(layout.file_range(5), None);
}

#[test]
fn a_piece_spans_several_files_and_skips_empty_ones() {
    let layout = sample();
    let segments: Vec<_> = layout.piece_segments(0).unwrap().collect();
    assert_eq!(segments, vec![seg(0, 0, 5, 0), seg(2, 0, 3, 5), seg(3, 0, 2, 8), seg(4, 0, 6, 10)]);
    let last: Vec<_> = layout.piece_segments(1).unwrap().collect();
    assert_eq!(last, vec![seg(4, 6, 4, 0)]);
}

#[test]
fn a_range_inside_a_piece_maps_to_the_right_bytes() {
    let layout = sample();
    // Bytes 4..12 of piece 0: last byte of a, all of b, all of c, first 2 of d.
    let segments: Vec<_> = layout.segments(0, 4, 8).unwrap().collect();
    assert_eq!(segments, vec![seg(0, 4, 1, 0), seg(2, 0, 3, 1), seg(3, 0, 2, 4), seg(4, 0, 2, 6)]);
    // Starting exactly where the empty file sits.
    let segments: Vec<_> = layout.segments(0, 5, 1).unwrap().collect();
    assert_eq!(segments, vec![seg(2, 0, 1, 0)]);
    assert_eq!(layout.segments(0, 16, 0).unwrap().count(), 0);
}

#[test]
fn ranges_past_the_piece_are_refused() {
    let layout = sample();
    assert!(matches!(
        layout.segments(1, 2, 3),
        Err(StorageError::BlockOutOfRange { piece: 1, .. })
    ));
    assert!(layout.segments(0, u32::MAX, 1).is_err());
    assert!(layout.check_block(0, 0, usize::MAX).is_err());
    assert!(layout.segments(7, 0, 1).is_err());
}

#[test]
fn pieces_of_each_file() {
    let layout = sample();
    assert_eq!(layout.file_pieces(0), Some(0..1));
    assert_eq!(layout.file_pieces(1), Some(0..0));
    assert_eq!(layout.file_pieces(4), Some(0..2));
    assert_eq!(layout.file_pieces(9), None);
}

#[test]
fn bad_geometry_is_refused() {
    assert!(matches!(
        StorageLayout::new(0, vec![FileSpec::new(&["a"], 1)]),
        Err(StorageError::ZeroPieceLength)
    ));
    assert!(matches!(
        StorageLayout::new(1, vec![FileSpec::new(&["a"], u64::MAX), FileSpec::new(&["b"], 1)]),
        Err(StorageError::TotalLengthOverflow)
    ));
    assert!(matches!(
        StorageLayout::new(1, vec![FileSpec::new(&["a"], 1 << 33)]),
        Err(StorageError::TooManyPieces { .. })
    ));
}

/// Small deterministic generator so the test needs no extra dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn segments_agree_with_a_byte_by_byte_mapping() {
    let mut rng = Lcg(7);
    for _ in 0..200 {
        let file_count = 1 + rng.next(8) as usize;
        let files: Vec<_> =
            (0..file_count).map(|i| FileSpec::new(&[&format!("f{i}")], rng.next(40))).collect();
        let piece_length = 1 + rng.next(24) as u32;
        let layout = StorageLayout::new(piece_length, files.clone()).unwrap();
        // Which file and offset each torrent byte belongs to, the slow way.
        let owner: Vec<(usize, u64)> = files
            .iter()
            .enumerate()
            .flat_map(|(i, f)| (0..f.length).map(move |o| (i, o)))
            .collect();
        assert_eq!(owner.len() as u64, layout.total_length());
        for piece in 0..layout.piece_count() {
            let piece_len = layout.piece_len(piece).unwrap();
            let offset = rng.next(u64::from(piece_len)) as u32;
            let len = rng.next(u64::from(piece_len - offset) + 1) as u32;
            let mut mapped = Vec::new();
            let mut expected_range_offset = 0;
            for s in layout.segments(piece, offset, len).unwrap() {
                assert!(s.len > 0);
                assert_eq!(s.range_offset, expected_range_offset);
                expected_range_offset += s.len;
                mapped.extend((0..u64::from(s.len)).map(|k| (s.file_index, s.file_offset + k)));
            }
            let start = (layout.piece_offset(piece) + u64::from(offset)) as usize;
            assert_eq!(mapped, owner[start..start + len as usize]);
        }
    }
}
