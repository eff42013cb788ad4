//! Any `nvidia-smi` output gives GPUs (at most one a line, numbered in order, with
//! finite figures) and a CUDA version or none, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_server::{parse_cuda_version, parse_gpu_csv};

fuzz_target!(|text: &str| {
    let gpus = parse_gpu_csv(text, "http://127.0.0.1:1", "12.4");
    assert!(gpus.len() <= text.lines().count());
    for (i, gpu) in gpus.iter().enumerate() {
        assert_eq!(gpu.intra_node_id as usize, i);
        assert!([
            gpu.temperature,
            gpu.gpu_utilization,
            gpu.power_usage,
            gpu.power_cap
        ]
        .iter()
        .all(|f| f.is_finite()));
    }
    if let Some(version) = parse_cuda_version(text) {
        assert!(version.chars().all(|c| c.is_ascii_digit() || c == '.'));
    }
});
