//! Kernel launches per training step of the course loop (batch 10, hidden 100) on the GPU
//! backends, counted by the backends themselves (wgpu's dispatch counter, CUDA's launch
//! counter, on a GPU and on the emulated device): at most 24 (issue #12; 58 before
//! fusion). Alone in its test binary, so no other test's kernels are counted. Absent backends print SKIPPED to stderr
//! (a failure when `MINITORCH_REQUIRE_BACKENDS` names them).

mod common;

use common::launches;
use minitorch::train::{TrainConfig, Trainer};
use minitorch::Device;

#[test]
fn a_training_step_launches_at_most_24_kernels() {
    for device in [Device::Wgpu, Device::Cuda, Device::CudaEmu] {
        if let Err(e) = launches(device) {
            common::skip_or_fail(device, "launches per step", &e);
            continue;
        }
        let mut t = Trainer::new(TrainConfig {
            hidden: 100,
            batch: 10,
            points: 50,
            device,
            ..TrainConfig::default()
        })
        .unwrap();
        t.epoch().unwrap();
        let before = launches(device).unwrap();
        t.epoch().unwrap();
        let per_step = (launches(device).unwrap() - before) as f64 / 5.0;
        println!("{device}: {per_step} launches per training step");
        assert!(
            per_step <= 24.0,
            "{device}: {per_step} launches per training step, more than 24"
        );
    }
}
