//! Tests in a real browser (wasm-bindgen-test in headless Chromium, run by
//! `scripts/web.sh test`): the conformance matrix's table on the browser's WebGPU,
//! compared with the CPU backend in the same wasm module with the native tolerances
//! (tests/common), and a training run on WebGPU. A browser without a WebGPU adapter fails
//! these tests: it does not skip them.
#![cfg(target_arch = "wasm32")]

#[path = "../../tests/common/mod.rs"]
mod common;

use common::cases;
use minitorch::datasets::DatasetKind;
use minitorch::train::{self, TrainConfig, Trainer};
use minitorch::{Device, Tensor};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Set up WebGPU (a failure, not a skip, when the browser has no adapter) and check the
/// matrix has its WebGPU column.
async fn webgpu() {
    let b = Device::Wgpu
        .backend_async()
        .await
        .unwrap_or_else(|e| panic!("no WebGPU in this browser: {e}"));
    console_log!("WebGPU adapter: {}", b.describe());
    let present: Vec<Device> = common::columns().iter().map(|c| c.device).collect();
    assert!(present.contains(&Device::Wgpu), "columns: {present:?}");
}

#[wasm_bindgen_test]
async fn table_map() {
    webgpu().await;
    common::check_all_async(&cases::map()).await;
}

#[wasm_bindgen_test]
async fn table_zip() {
    webgpu().await;
    common::check_all_async(&cases::zip()).await;
}

#[wasm_bindgen_test]
async fn table_reduce() {
    webgpu().await;
    common::check_all_async(&cases::reduce()).await;
}

#[wasm_bindgen_test]
async fn table_matmul() {
    webgpu().await;
    common::check_all_async(&cases::matmul()).await;
}

#[wasm_bindgen_test]
async fn table_copy_and_view() {
    webgpu().await;
    common::check_all_async(&cases::copy_and_view()).await;
}

#[wasm_bindgen_test]
async fn table_pad() {
    webgpu().await;
    common::check_all_async(&cases::pad()).await;
}

#[wasm_bindgen_test]
async fn table_uniform() {
    webgpu().await;
    common::check_all_async(&cases::uniform()).await;
}

#[wasm_bindgen_test]
async fn blocking_readback_is_an_error_naming_the_async_one() {
    webgpu().await;
    let t = Tensor::from_vec(vec![1.0, 2.0], &[2], Device::Wgpu).unwrap();
    let e = t.to_vec().unwrap_err().to_string();
    assert!(e.contains("Tensor::to_vec_async"), "{e}");
    let e = t.sum_all().unwrap().item().unwrap_err().to_string();
    assert!(e.contains("Tensor::item_async"), "{e}");
    assert_eq!(t.to_vec_async().await.unwrap(), vec![1.0, 2.0]);
    // The CPU backend reads back at once, so its blocking calls work in the browser too.
    let c = Tensor::from_vec(vec![3.0], &[1], Device::Cpu).unwrap();
    assert_eq!(c.item().unwrap(), 3.0);
}

#[wasm_bindgen_test]
async fn training_on_xor_reaches_45_of_50_on_webgpu() {
    webgpu().await;
    let config = TrainConfig {
        dataset: DatasetKind::Xor,
        hidden: 100,
        lr: 0.05,
        epochs: 300,
        device: Device::Wgpu,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(config).unwrap();
    let s = train::run_async(&mut t, 100, |l| {
        console_log!(
            "epoch {} loss {:.3} correct {}/{} ({:.1} ms/epoch)",
            l.epoch,
            l.loss,
            l.correct,
            l.total,
            l.mean_epoch.as_secs_f64() * 1e3
        )
    })
    .await
    .unwrap();
    assert!(s.final_loss.is_finite(), "loss {}", s.final_loss);
    assert!(
        s.correct >= 45,
        "xor on WebGPU: {}/{} correct",
        s.correct,
        s.total
    );
    console_log!(
        "xor on WebGPU: median {:.2} ms/epoch",
        s.median_epoch().as_secs_f64() * 1e3
    );
}
