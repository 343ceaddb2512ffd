// random (twin of cuda/random.cu): the library's counter-based generator
// (src/backend/random.rs). Element i of the draw with key (k0, k1) is
// hash(hash(i ^ k0) ^ k1) with Chris Wellons' lowbias32 mixer, its top 24 bits scaled to
// [0, 1). Every WGSL extent is below 2^32, so the index's high word is 0.
// Metadata (src/backend/gpu/meta.rs): [size_lo, size_hi, k0, k1]; size_hi is 0 here.
// Binding 0 is unused (every kernel family binds one input).

@group(0) @binding(0) var<storage, read> unused: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> md: array<u32>;

fn hash32(v: u32) -> u32 {
    var x = v;
    x = x ^ (x >> 16u);
    x = x * 0x7feb352du;
    x = x ^ (x >> 15u);
    x = x * 0x846ca68bu;
    x = x ^ (x >> 16u);
    return x;
}

@compute @workgroup_size(256)
fn random_OPNAME(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = global_linear(wg, nwg, lid);
    if (i >= md[0]) {
        return;
    }
    let h = hash32(hash32(i ^ md[2]) ^ md[3]);
    out[i] = f32(h >> 8u) * (1.0 / 16777216.0);
}
