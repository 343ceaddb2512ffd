//! minitorch in the browser: the wasm entry of the training playground (web/site/index.html)
//! and of the digits page (web/site/digits.html, [`Digits`]), built
//! by `scripts/web.sh build DIR` with `wasm-bindgen --target web`.
//!
//! The page drives the loop one epoch at a time ([`Session::epoch`] resolves to the loss),
//! so it can draw between epochs and stop at any time. Every readback is awaited
//! ([`minitorch::train::Trainer::epoch_async`] and friends): a browser cannot block on
//! the GPU. The browser tests are in web/tests/browser.rs.
//!
//! Everything here is for wasm32; natively the crate is empty.
#![cfg(target_arch = "wasm32")]

mod digits;
pub use digits::Digits;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use minitorch::datasets::DatasetKind;
use minitorch::train::{TrainConfig, Trainer};
use minitorch::Device;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

fn js_err(e: minitorch::Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// Set up the WebGPU backend (once); resolves to its adapter's description, or rejects
/// with the reason there is none.
#[wasm_bindgen(js_name = initWebgpu)]
pub async fn init_webgpu() -> Result<String, JsValue> {
    let b = Device::Wgpu.backend_async().await.map_err(js_err)?;
    Ok(b.describe())
}

/// The names of the datasets, in the course's order.
#[wasm_bindgen]
pub fn datasets() -> Vec<String> {
    DatasetKind::ALL
        .iter()
        .map(|k| k.name().to_string())
        .collect()
}

/// One training run: the course's network and loop on the chosen backend.
#[wasm_bindgen]
pub struct Session {
    // Taken out for the length of each async call, so no borrow is held across an await.
    trainer: Rc<RefCell<Option<Trainer>>>,
    points: Vec<f64>,
    labels: Vec<f32>,
    backend: String,
}

fn take(cell: &RefCell<Option<Trainer>>) -> Result<Trainer, JsValue> {
    cell.borrow_mut().take().ok_or_else(|| {
        JsError::new("the previous call on this session has not finished; await it first").into()
    })
}

#[wasm_bindgen]
impl Session {
    /// A run of `dataset` (`simple`, `diag`, `split`, `xor`, `circle`, `spiral`) with
    /// `points` points, `hidden` hidden units, learning rate `lr`, on `backend` (`webgpu`
    /// or `cpu`; WebGPU needs `initWebgpu()` first), from `seed`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        dataset: &str,
        points: usize,
        hidden: usize,
        lr: f32,
        backend: &str,
        seed: u32,
    ) -> Result<Session, JsValue> {
        let device = Device::parse(backend).map_err(js_err)?;
        let config = TrainConfig {
            dataset: DatasetKind::parse(dataset).map_err(js_err)?,
            points,
            hidden,
            lr,
            seed: seed as u64,
            device,
            ..TrainConfig::default()
        };
        let trainer = Trainer::new(config).map_err(js_err)?;
        let points = trainer.data.x.iter().flatten().copied().collect();
        let labels = trainer.data.y.clone();
        let backend = device.backend().map(|b| b.describe()).map_err(js_err)?;
        Ok(Session {
            trainer: Rc::new(RefCell::new(Some(trainer))),
            points,
            labels,
            backend,
        })
    }

    /// The points, as x1, x2 pairs.
    pub fn points(&self) -> Vec<f64> {
        self.points.clone()
    }

    /// The labels (0 or 1).
    pub fn labels(&self) -> Vec<f32> {
        self.labels.clone()
    }

    /// The backend's description (adapter or CPU).
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Train one epoch; resolves to the sum of its batch losses.
    pub fn epoch(&self) -> Promise {
        let cell = self.trainer.clone();
        future_to_promise(async move {
            let mut t = take(&cell)?;
            let r = t.epoch_async().await;
            *cell.borrow_mut() = Some(t);
            Ok(r.map_err(js_err)?.into())
        })
    }

    /// Resolves to the number of points classified correctly.
    pub fn correct(&self) -> Promise {
        let cell = self.trainer.clone();
        future_to_promise(async move {
            let t = take(&cell)?;
            let r = t.correct_async().await;
            *cell.borrow_mut() = Some(t);
            Ok((r.map_err(js_err)? as u32).into())
        })
    }

    /// Resolves to the class-1 probabilities on an `n` x `n` grid over [0, 1]^2 (a
    /// Float32Array, rows of x2 from 0 up, each along x1), for the decision boundary.
    pub fn grid(&self, n: usize) -> Promise {
        let cell = self.trainer.clone();
        future_to_promise(async move {
            let t = take(&cell)?;
            let step = 1.0 / n.saturating_sub(1).max(1) as f64;
            let pts: Vec<[f64; 2]> = (0..n * n)
                .map(|i| [(i % n) as f64 * step, (i / n) as f64 * step])
                .collect();
            let r = t.predict_async(&pts).await;
            *cell.borrow_mut() = Some(t);
            let probs = r.map_err(js_err)?;
            Ok(js_sys::Float32Array::from(probs.as_slice()).into())
        })
    }
}
