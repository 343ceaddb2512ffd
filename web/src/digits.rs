//! The digits page's wasm entry (web/site/digits.html): the course's CNN trained with
//! [`minitorch::vision::ImageTrainer`], the same loop as the `mnist` example. The page
//! records a few batches at a time ([`Digits::train_batches`], nothing read back) and
//! awaits one readback per epoch ([`Digits::epoch_stats`]).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use minitorch::vision::{
    accuracy, idx, ImageConfig, ImageSet, ImageTrainer, ModelKind, OptimizerKind,
};
use minitorch::Device;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::js_err;

/// One training run of the course's network on digits given as IDX files.
#[wasm_bindgen]
pub struct Digits {
    // Taken out for the length of each async call, so no borrow is held across an await.
    trainer: Rc<RefCell<Option<ImageTrainer>>>,
    backend: String,
    val: ImageSet,
    train_count: usize,
    batches_per_epoch: usize,
}

fn take(cell: &RefCell<Option<ImageTrainer>>) -> Result<ImageTrainer, JsValue> {
    cell.borrow_mut().take().ok_or_else(|| {
        JsError::new("the previous call on this session has not finished; await it first").into()
    })
}

fn load(images: &[u8], labels: &[u8], what: &str) -> Result<ImageSet, JsValue> {
    let im = idx::parse(images, &format!("{what} images")).map_err(js_err)?;
    let lb = idx::parse(labels, &format!("{what} labels")).map_err(js_err)?;
    match (&im.dims[..], &lb.dims[..]) {
        ([n, r, c], [m]) if n == m => ImageSet::new(im.data, lb.data, *r, *c).map_err(js_err),
        _ => Err(JsError::new(&format!(
            "{what}: images {:?} and labels {:?} do not match",
            im.dims, lb.dims
        ))
        .into()),
    }
}

#[wasm_bindgen]
impl Digits {
    /// A run on the first `n_train` training digits (IDX bytes, gzip or not), validated on
    /// all the validation digits, with `batch` images per batch, learning rate `lr` (SGD),
    /// on `backend` (`wgpu` or `cpu`; WebGPU needs `initWebgpu()` first), from `seed`.
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(constructor)]
    pub fn new(
        train_images: &[u8],
        train_labels: &[u8],
        val_images: &[u8],
        val_labels: &[u8],
        n_train: usize,
        batch: usize,
        lr: f32,
        backend: &str,
        seed: u32,
    ) -> Result<Digits, JsValue> {
        let device = Device::parse(backend).map_err(js_err)?;
        let train = load(train_images, train_labels, "training")?.take(n_train);
        let val = load(val_images, val_labels, "validation")?;
        let config = ImageConfig {
            model: ModelKind::Course,
            optimizer: OptimizerKind::Sgd,
            lr,
            batch,
            seed: seed as u64,
            device,
            ..ImageConfig::default()
        };
        let trainer = ImageTrainer::new(config, train, val.clone()).map_err(js_err)?;
        let backend = device.backend().map(|b| b.describe()).map_err(js_err)?;
        Ok(Digits {
            train_count: trainer.train.len(),
            batches_per_epoch: trainer.batches_per_epoch(),
            trainer: Rc::new(RefCell::new(Some(trainer))),
            backend,
            val,
        })
    }

    /// The backend's description (adapter or CPU).
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Training digits.
    #[wasm_bindgen(getter, js_name = trainCount)]
    pub fn train_count(&self) -> usize {
        self.train_count
    }

    /// Validation digits.
    #[wasm_bindgen(getter, js_name = valCount)]
    pub fn val_count(&self) -> usize {
        self.val.len()
    }

    /// Batches per epoch.
    #[wasm_bindgen(getter, js_name = batchesPerEpoch)]
    pub fn batches_per_epoch(&self) -> usize {
        self.batches_per_epoch
    }

    /// Validation digit `i`'s 784 pixel bytes.
    #[wasm_bindgen(js_name = valImage)]
    pub fn val_image(&self, i: usize) -> Result<Vec<u8>, JsValue> {
        if i >= self.val.len() {
            return Err(JsError::new(&format!("no validation digit {i}")).into());
        }
        Ok(self.val.image(i).to_vec())
    }

    /// Validation digit `i`'s label.
    #[wasm_bindgen(js_name = valLabel)]
    pub fn val_label(&self, i: usize) -> Result<u32, JsValue> {
        self.val
            .labels
            .get(i)
            .map(|&l| l as u32)
            .ok_or_else(|| JsError::new(&format!("no validation digit {i}")).into())
    }

    /// Trains up to `k` batches of the current epoch (starting one if none is running);
    /// returns the batches left in it. Nothing is read back.
    #[wasm_bindgen(js_name = trainBatches)]
    pub fn train_batches(&self, k: usize) -> Result<usize, JsValue> {
        let mut t = take(&self.trainer)?;
        let r = t.train_batches(k);
        *self.trainer.borrow_mut() = Some(t);
        r.map_err(js_err)
    }

    /// Ends the epoch; resolves to `[loss, correct, seen]` (a Float64Array): the sum of
    /// its batch losses, and the training digits classified correctly while training.
    #[wasm_bindgen(js_name = epochStats)]
    pub fn epoch_stats(&self) -> Promise {
        let cell = self.trainer.clone();
        future_to_promise(async move {
            let mut t = take(&cell)?;
            let r = t.finish_epoch_async().await;
            *cell.borrow_mut() = Some(t);
            let s = r.map_err(js_err)?;
            let v = [s.loss as f64, s.correct as f64, s.seen as f64];
            Ok(js_sys::Float64Array::from(&v[..]).into())
        })
    }

    /// Resolves to `[correct, total]` over the validation digits (a Float64Array).
    pub fn validate(&self) -> Promise {
        let cell = self.trainer.clone();
        future_to_promise(async move {
            let t = take(&cell)?;
            let r = t.predict_async(&t.val).await;
            let (c, n) = match &r {
                Ok(p) => accuracy(p, &t.val),
                Err(_) => (0, 0),
            };
            *cell.borrow_mut() = Some(t);
            r.map_err(js_err)?;
            Ok(js_sys::Float64Array::from(&[c as f64, n as f64][..]).into())
        })
    }

    /// Resolves to the ten class probabilities of each 28x28 image in `images` (bytes,
    /// image after image), as one Float32Array.
    pub fn predict(&self, images: Vec<u8>) -> Promise {
        let cell = self.trainer.clone();
        future_to_promise(async move {
            let t = take(&cell)?;
            let r = t.probabilities_async(&images).await;
            *cell.borrow_mut() = Some(t);
            let p = r.map_err(js_err)?;
            Ok(js_sys::Float32Array::from(p.as_slice()).into())
        })
    }
}
