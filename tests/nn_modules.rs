//! The Module 4 layers and optimisers: `nn::Conv1d` / `nn::Conv2d` (PyTorch's init bounds,
//! `state_dict` names and shapes through safetensors), `nn::Dropout` (train / eval, a new
//! mask per call), `Tensor::sqrt`'s gradient, Adam's bad hyperparameters, and a small CNN
//! whose loss falls with Adam on the CPU and on every other backend present, with the same
//! losses (dropout masks included) within the matrix's tolerance.

use minitorch::nn::{load_safetensors, save_safetensors, Conv1d, Conv2d, Dropout, Module};
use minitorch::optim::Adam;
use minitorch::tensor::grad_check::grad_check;
use minitorch::tensor::Reduction;
use minitorch::{Activation, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn conv_layers_use_pytorch_init_and_names() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let c = Conv2d::new(4, 8, [3, 3], &mut rng, Device::Cpu).unwrap();
    let names: Vec<(String, Vec<usize>)> = c
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.value().shape().to_vec()))
        .collect();
    assert_eq!(
        names,
        [
            ("weight".to_string(), vec![8, 4, 3, 3]),
            ("bias".to_string(), vec![8])
        ]
    );
    // U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 4 * 3 * 3 = 36: bound 1/6.
    let w = c.weight.value().to_vec().unwrap();
    assert!(w.iter().all(|v| v.abs() <= 1.0 / 6.0));
    assert!(w.iter().any(|v| v.abs() > 0.15), "spread over the range");
    let b = c.bias.as_ref().unwrap().value().to_vec().unwrap();
    assert!(b.iter().all(|v| v.abs() <= 1.0 / 6.0));
    let c1 = Conv1d::with(2, 3, 5, 2, (1, 1), false, &mut rng, Device::Cpu).unwrap();
    assert_eq!(c1.named_parameters().len(), 1);
    let x = Tensor::from_vec(vec![0.5; 2 * 2 * 9], &[2, 2, 9], Device::Cpu).unwrap();
    assert_eq!(c1.forward(&x).unwrap().shape(), [2, 3, 4]);
    assert!(Conv2d::new(0, 8, [3, 3], &mut rng, Device::Cpu).is_err());
}

/// conv1 (1 -> 4, 3x3, padding 1) -> relu -> avgpool 2 -> conv2 (4 -> 2, 3x3) ->
/// flatten -> dropout: the course's network in small.
struct Net {
    conv1: Conv2d,
    conv2: Conv2d,
    drop: Dropout,
}

impl Net {
    fn new(device: Device) -> Net {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        Net {
            conv1: Conv2d::with(
                1,
                4,
                [3, 3],
                [1, 1],
                [(1, 1), (1, 1)],
                true,
                &mut rng,
                device,
            )
            .unwrap(),
            conv2: Conv2d::new(4, 2, [3, 3], &mut rng, device).unwrap(),
            drop: Dropout::new(0.25, 9).unwrap(),
        }
    }
    fn forward(&self, x: &Tensor) -> minitorch::Result<Tensor> {
        let h = self
            .conv1
            .forward_act(x, Activation::Relu)?
            .avgpool2d([2, 2])?;
        let h = self.conv2.forward(&h)?;
        let b = h.shape()[0];
        self.drop.forward(&h.contiguous()?.view(&[b, 2 * 2 * 2])?)
    }
}

impl Module for Net {
    fn own_parameters(&self) -> Vec<(String, minitorch::nn::Parameter)> {
        Vec::new()
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![
            ("conv1".into(), &self.conv1 as &dyn Module),
            ("conv2".into(), &self.conv2),
            ("drop".into(), &self.drop),
        ]
    }
    fn mode(&self) -> &minitorch::nn::Mode {
        self.conv1.mode()
    }
}

fn train(device: Device, steps: usize) -> Vec<f32> {
    let net = Net::new(device);
    let mut opt = Adam::new(net.parameters(), 5e-2);
    let xs: Vec<f32> = (0..8 * 8 * 8)
        .map(|i| ((i * 37 % 17) as f32) / 17.0)
        .collect();
    let x = Tensor::from_vec(xs, &[8, 1, 8, 8], device).unwrap();
    let labels = [0u32, 1, 2, 3, 4, 5, 6, 7];
    (0..steps)
        .map(|_| {
            opt.zero_grad();
            let loss = net
                .forward(&x)
                .unwrap()
                .cross_entropy(&labels, Reduction::Mean)
                .unwrap();
            loss.backward().unwrap();
            opt.step().unwrap();
            loss.item().unwrap()
        })
        .collect()
}

#[test]
fn a_small_cnn_trains_with_adam_and_dropout_alike_on_every_backend() {
    let cpu = train(Device::Cpu, 40);
    assert!(cpu[39] < cpu[0] * 0.7, "loss did not fall: {cpu:?}");
    for d in [Device::Wgpu, Device::Cuda, Device::CudaEmu] {
        if let Err(e) = d.backend() {
            let required = std::env::var("MINITORCH_REQUIRE_BACKENDS").is_ok_and(|v| {
                v.split(',')
                    .any(|r| Device::parse(r.trim()).is_ok_and(|r| r == d))
            });
            assert!(!required, "{d} is required but absent: {e}");
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {d} not present, compared on the CPU only ({e})"
            );
            continue;
        }
        let got = train(d, 40);
        for (i, (g, c)) in got.iter().zip(&cpu).enumerate() {
            assert!(
                (g - c).abs() <= 1e-3 * (1.0 + c.abs()),
                "{d} step {i}: {g} vs cpu {c}"
            );
        }
    }
}

#[test]
fn state_dict_names_round_trip_through_safetensors() {
    let net = Net::new(Device::Cpu);
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]
    );
    let path =
        std::env::temp_dir().join(format!("minitorch-cnn-{}.safetensors", std::process::id()));
    save_safetensors(&net, &path).unwrap();
    let other = Net::new(Device::Cpu);
    other
        .conv1
        .weight
        .update(Tensor::zeros(&[4, 1, 3, 3], Device::Cpu).unwrap());
    load_safetensors(&other, &path).unwrap();
    assert_eq!(
        other.conv1.weight.value().to_vec().unwrap(),
        net.conv1.weight.value().to_vec().unwrap()
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn dropout_layer_draws_a_new_mask_per_call_and_is_identity_in_eval() {
    let d = Dropout::new(0.5, 1).unwrap();
    let x = Tensor::ones(&[1000], Device::Cpu).unwrap();
    let a = d.forward(&x).unwrap().to_vec().unwrap();
    let b = d.forward(&x).unwrap().to_vec().unwrap();
    assert_ne!(a, b);
    assert!(a.iter().all(|&v| v == 0.0 || v == 2.0));
    d.eval();
    assert_eq!(d.forward(&x).unwrap().to_vec().unwrap(), vec![1.0; 1000]);
    assert!(Dropout::new(1.5, 0).is_err());
    assert!(Dropout::new(-0.5, 0).is_err());
}

#[test]
fn sqrt_forward_special_values_and_gradient() {
    let x = Tensor::from_vec(
        vec![4.0, 0.0, -0.0, f32::INFINITY, -1.0, 2.0],
        &[6],
        Device::Cpu,
    )
    .unwrap();
    let y = x.sqrt().unwrap().to_vec().unwrap();
    assert_eq!(&y[..4], [2.0, 0.0, -0.0, f32::INFINITY]);
    assert!(y[3].is_infinite() && y[4].is_nan() && y[5] == 2f32.sqrt());
    let p = Tensor::from_vec(vec![0.3, 1.7, 4.0, 9.5], &[2, 2], Device::Cpu).unwrap();
    grad_check(|a| a[0].sqrt(), &[p], 8, 1).unwrap();
}

#[test]
fn adam_rejects_bad_hyperparameters_before_changing_anything() {
    let p = minitorch::nn::Parameter::new(Tensor::ones(&[2], Device::Cpu).unwrap());
    for mut opt in [
        Adam::new(vec![p.clone()], f32::NAN),
        Adam::new(vec![p.clone()], 1e-3).with_betas(1.0, 0.9),
        Adam::new(vec![p.clone()], 1e-3).with_eps(-1.0),
        Adam::adamw(vec![p.clone()], 1e-3).with_weight_decay(f32::INFINITY),
    ] {
        let e = opt.step().unwrap_err().to_string();
        assert!(e.starts_with("adam"), "{e}");
    }
    assert_eq!(p.value().to_vec().unwrap(), [1.0, 1.0]);
}
