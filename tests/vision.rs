//! The image-set loader: IDX round trips (plain and gzip), every bad-file case, the npm
//! digits conversion, and the checked-in sample.

use std::io::Write;
use std::path::{Path, PathBuf};

use minitorch::vision::idx::{self, IdxArray};
use minitorch::vision::{npm_digits, ImageSet, Split, FILES};
use minitorch::Error;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("minitorch-vision-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn sample_set(count: usize, rows: usize, cols: usize) -> ImageSet {
    let images = (0..count * rows * cols)
        .map(|i| (i * 37 % 256) as u8)
        .collect();
    let labels = (0..count).map(|i| (i % 10) as u8).collect();
    ImageSet::new(images, labels, rows, cols).unwrap()
}

/// The message of an `Io` error, after checking that it names `path`.
fn io_msg(e: Error, path: &str) -> String {
    match e {
        Error::Io { path: p, msg, .. } => {
            assert!(p.contains(path), "error names {p}, expected {path}");
            msg
        }
        other => panic!("expected an Io error naming {path}, got {other:?}"),
    }
}

#[test]
fn encode_matches_the_format_byte_for_byte() {
    let a = IdxArray {
        dims: vec![2, 1, 3],
        data: vec![1, 2, 3, 4, 5, 255],
    };
    let bytes = idx::encode(&a).unwrap();
    assert_eq!(
        bytes,
        [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255]
    );
    assert_eq!(idx::parse(&bytes, "mem").unwrap(), a);
    assert_eq!(idx::parse(&gzip(&bytes), "mem.gz").unwrap(), a);
}

#[test]
fn round_trip_through_files_plain_and_gzip() {
    let dir = scratch("roundtrip");
    let split = Split {
        train: sample_set(7, 5, 3),
        test: sample_set(4, 5, 3),
    };
    for gz in [false, true] {
        let d = dir.join(if gz { "gz" } else { "plain" });
        split.save(&d, gz).unwrap();
        for f in FILES {
            let name = if gz { format!("{f}.gz") } else { f.to_string() };
            assert!(d.join(&name).is_file(), "{name} written");
        }
        assert_eq!(Split::load(&d).unwrap(), split);
    }
    // A gzip file is recognised by its bytes, not its name.
    let odd = dir.join("odd");
    std::fs::create_dir_all(&odd).unwrap();
    for f in FILES {
        std::fs::copy(dir.join("gz").join(format!("{f}.gz")), odd.join(f)).unwrap();
    }
    assert_eq!(Split::load(&odd).unwrap(), split);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_bad_header_is_an_error_naming_the_file() {
    let good = idx::encode(&IdxArray {
        dims: vec![2, 2],
        data: vec![9; 4],
    })
    .unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "truncated"),
        (vec![0, 0, 8], "truncated"),
        (vec![1, 0, 8, 1, 0, 0, 0, 0], "not an IDX file"),
        (b"PK\x03\x04rest".to_vec(), "not an IDX file"),
        (
            vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0],
            "element type 0x0d",
        ),
        (vec![0, 0, 8, 0], "0 dimensions"),
        (vec![0, 0, 8, 200], "200 dimensions"),
        (good[..10].to_vec(), "inside dimension 1"),
        (good[..good.len() - 1].to_vec(), "holds 3"),
        ([good.clone(), vec![7]].concat(), "bytes follow"),
        // 2^32-1 cubed overflows usize: refused before any allocation.
        (
            vec![
                0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
            ],
            "overflow",
        ),
        // 2^62 bytes cannot be allocated: an error, not an abort.
        (
            vec![0, 0, 8, 2, 128, 0, 0, 0, 128, 0, 0, 0],
            "cannot be allocated",
        ),
    ];
    for (bytes, want) in cases {
        for (data, name) in [(bytes.clone(), "f.idx"), (gzip(&bytes), "f.idx.gz")] {
            let msg = io_msg(idx::parse(&data, name).unwrap_err(), name);
            assert!(
                msg.contains(want),
                "{name} {bytes:?}: {msg:?} lacks {want:?}"
            );
        }
    }
    // A corrupt gzip stream.
    let mut gz = gzip(&good);
    let mid = gz.len() / 2;
    gz.truncate(mid);
    io_msg(idx::parse(&gz, "cut.gz").unwrap_err(), "cut.gz");
}

#[test]
fn images_and_labels_must_agree() {
    let dir = scratch("agree");
    let set = sample_set(5, 4, 4);
    let (im, lb) = (dir.join("im"), dir.join("lb"));
    set.save(&im, &lb, false).unwrap();
    assert_eq!(ImageSet::load(&im, &lb).unwrap(), set);

    // Labels for 4 images against 5 images.
    set.take(4)
        .save(&dir.join("im4"), &dir.join("lb4"), false)
        .unwrap();
    let msg = io_msg(ImageSet::load(&im, &dir.join("lb4")).unwrap_err(), "lb4");
    assert!(
        msg.contains("4 labels") && msg.contains("5 images"),
        "{msg}"
    );
    // Files swapped: a labels file is not images.
    let msg = io_msg(ImageSet::load(&lb, &im).unwrap_err(), "lb");
    assert!(msg.contains("3 dimensions"), "{msg}");
    // A missing file names the four files the loader wants.
    let err = Split::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("get-data.sh"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(ImageSet::new(vec![0; 10], vec![0; 2], 2, 2).is_err());
    assert!(ImageSet::new(vec![], vec![], 0, 28).is_err());
    assert!(ImageSet::new(vec![0; 8], vec![0; 2], usize::MAX, 2).is_err());
}

#[test]
fn npm_values_convert_to_the_exact_bytes() {
    // Every byte b, written as the package writes it: round(b / 255, 3), shortest form.
    let values: Vec<String> = (0..=255u32)
        .map(|b| {
            let v = (b as f64 / 255.0 * 1000.0).round() / 1000.0;
            format!("{v}")
        })
        .collect();
    let text = format!("{{ \"data\": [{}] }}", values.join(","));
    let bytes = npm_digits::parse_digit_file(&text, "x.json").unwrap();
    assert_eq!(bytes, (0..=255u8).collect::<Vec<_>>());

    for (text, want) in [
        ("{ \"data\": [0,0.5] }", "not a byte"),
        ("{ \"data\": [0,1.2] }", "not a byte"),
        ("{ \"data\": [0,-0.004] }", "not a byte"),
        ("{ \"data\": [0,x] }", "not a number"),
        ("{ \"data\": [0,0.2", "truncated"),
        ("[1]", "expected"),
    ] {
        let msg = io_msg(
            npm_digits::parse_digit_file(text, "d.json").unwrap_err(),
            "d.json",
        );
        assert!(msg.contains(want), "{text}: {msg}");
    }
}

#[test]
fn conversion_interleaves_every_image_once() {
    let px = npm_digits::SIDE * npm_digits::SIDE;
    // Digit d contributes d + 1 images whose pixels are all d * 10 + (image number).
    let texts: [String; 10] = std::array::from_fn(|d| {
        let vals: Vec<String> = (0..=d)
            .flat_map(|i| {
                std::iter::repeat_n(
                    format!(
                        "{}",
                        ((d * 10 + i) as f64 / 255.0 * 1000.0).round() / 1000.0
                    ),
                    px,
                )
            })
            .collect();
        format!("{{\"data\":[{}]}}", vals.join(","))
    });
    let names: [String; 10] = std::array::from_fn(|d| format!("{d}.json"));
    let set = npm_digits::convert_texts(&texts, &names).unwrap();
    assert_eq!(set.len(), 55);
    let mut seen: Vec<(u8, u8)> = (0..set.len())
        .map(|i| {
            let img = set.image(i);
            assert!(img.iter().all(|&p| p == img[0]));
            (set.labels[i], img[0])
        })
        .collect();
    for &(label, px0) in &seen {
        assert_eq!(px0 / 10, label, "image and label stay together");
    }
    let order_is_grouped = seen.windows(2).all(|w| w[0].0 <= w[1].0);
    assert!(!order_is_grouped, "the digits are interleaved");
    seen.sort();
    let want: Vec<(u8, u8)> = (0..10u8)
        .flat_map(|d| (0..=d).map(move |i| (d, d * 10 + i)))
        .collect();
    assert_eq!(seen, want, "every image exactly once");
    // The permutation is a pure function of n and the seed.
    assert_eq!(npm_digits::shuffle(1000, 7), npm_digits::shuffle(1000, 7));
    let mut p = npm_digits::shuffle(1000, 7);
    p.sort();
    assert_eq!(p, (0..1000).collect::<Vec<_>>());
}

#[test]
fn checked_in_sample_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/digits");
    let split = Split::load(&dir).unwrap();
    assert_eq!((split.train.rows, split.train.cols), (28, 28));
    assert!(split.train.len() >= 500 && split.test.len() >= 100);
    for set in [&split.train, &split.test] {
        let mut counts = [0usize; 10];
        for &l in &set.labels {
            counts[l as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| c > 0),
            "every class present: {counts:?}"
        );
        // Real digits: mostly background, some ink at full intensity.
        let ink = set.images.iter().filter(|&&p| p > 128).count() as f64 / set.images.len() as f64;
        assert!((0.05..0.3).contains(&ink), "ink fraction {ink}");
    }
}

#[test]
fn batches_scale_pixels_and_keep_labels() {
    let set = sample_set(6, 2, 3);
    let (x, y) = set.batch(&[4, 1], minitorch::Device::Cpu).unwrap();
    assert_eq!(x.shape(), &[2, 1, 2, 3]);
    let want: Vec<f32> = set
        .image(4)
        .iter()
        .chain(set.image(1))
        .map(|&b| b as f32 / 255.0)
        .collect();
    assert_eq!(x.to_vec().unwrap(), want);
    assert_eq!(y, vec![4, 1]);
    let err = set
        .batch(&[6], minitorch::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("image 6 of a set of 6"), "{err}");
}

#[test]
fn confusion_counts_true_rows_and_predicted_columns() {
    let m = minitorch::vision::confusion(&[0, 1, 1, 2], &[0, 2, 1, 2], 3).unwrap();
    assert_eq!(m, vec![vec![1, 0, 0], vec![0, 1, 1], vec![0, 0, 1]]);
    assert!(minitorch::vision::confusion(&[0], &[3], 3).is_err());
    assert!(minitorch::vision::confusion(&[0, 1], &[0], 3).is_err());
}

/// A shifted batch moves every pixel by the offset, fills what enters the frame with 0 and
/// drops what leaves it; checked against an independent index formula on a non-square
/// image, for offsets in every direction and past the edge.
#[test]
fn shifted_batches_move_pixels_and_fill_with_zero() {
    use minitorch::vision::Shift;
    let (rows, cols) = (5, 7);
    let set = sample_set(3, rows, cols);
    let cases = [
        Shift { dy: 0, dx: 0 },
        Shift { dy: 1, dx: 0 },
        Shift { dy: 0, dx: -2 },
        Shift { dy: -2, dx: 3 },
        Shift { dy: 5, dx: 0 },
        Shift { dy: 0, dx: -7 },
    ];
    for s in cases {
        let (x, y) = set
            .batch_shifted(&[2, 0], &[s, Shift::default()], minitorch::Device::Cpu)
            .unwrap();
        assert_eq!(x.shape(), &[2, 1, rows, cols]);
        assert_eq!(y, vec![2, 0]);
        let got = x.to_vec().unwrap();
        let src = set.image(2);
        for r in 0..rows as i32 {
            for c in 0..cols as i32 {
                let (sr, sc) = (r - s.dy, c - s.dx);
                let inside = (0..rows as i32).contains(&sr) && (0..cols as i32).contains(&sc);
                let want = if inside {
                    src[(sr * cols as i32 + sc) as usize] as f32 / 255.0
                } else {
                    0.0
                };
                assert_eq!(
                    got[(r * cols as i32 + c) as usize],
                    want,
                    "{s:?} at ({r}, {c})"
                );
            }
        }
        // The second image, not shifted, is as `batch` gives it.
        let plain = set
            .batch(&[0], minitorch::Device::Cpu)
            .unwrap()
            .0
            .to_vec()
            .unwrap();
        assert_eq!(&got[rows * cols..], &plain[..]);
    }
    // One known pixel: (1, 2) moved by (+1, -2) lands at (2, 0); the first row and the
    // last two columns entered the frame, so they are zeros.
    let (x, _) = set
        .batch_shifted(&[1], &[Shift { dy: 1, dx: -2 }], minitorch::Device::Cpu)
        .unwrap();
    let got = x.to_vec().unwrap();
    assert_eq!(got[2 * cols], set.image(1)[cols + 2] as f32 / 255.0);
    assert!(
        set.image(1)[cols + 2] != 0,
        "the test pixel must not be background"
    );
    assert!(got[..cols].iter().all(|&v| v == 0.0));
    assert!(got
        .chunks(cols)
        .all(|row| row[cols - 2..].iter().all(|&v| v == 0.0)));
    let err = set
        .batch_shifted(&[0, 1], &[Shift::default()], minitorch::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 shifts for 2 images"), "{err}");
}

/// Random shifts repeat with the seed, differ between seeds, cover every offset in
/// [-max, max] and nothing outside; max 0 draws nothing.
#[test]
fn random_shifts_are_deterministic_by_seed_and_in_range() {
    use minitorch::vision::{Shift, Shifts};
    let a = Shifts::new(2, 7).unwrap().draw(2000);
    assert_eq!(a, Shifts::new(2, 7).unwrap().draw(2000));
    assert_ne!(a, Shifts::new(2, 8).unwrap().draw(2000));
    let mut seen = [[0usize; 5]; 5];
    for s in &a {
        assert!(
            (-2..=2).contains(&s.dy) && (-2..=2).contains(&s.dx),
            "{s:?}"
        );
        seen[(s.dy + 2) as usize][(s.dx + 2) as usize] += 1;
    }
    // 2000 draws over 25 offsets: 80 expected each.
    assert!(
        seen.iter().flatten().all(|&n| (40..130).contains(&n)),
        "{seen:?}"
    );
    // Drawing in two parts gives the same sequence.
    let mut s = Shifts::new(2, 7).unwrap();
    let mut parts = s.draw(700);
    parts.extend(s.draw(1300));
    assert_eq!(parts, a);
    assert_eq!(
        Shifts::new(0, 7).unwrap().draw(3),
        vec![Shift::default(); 3]
    );
    assert!(Shifts::new(65, 7).is_err());
}
