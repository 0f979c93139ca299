"""The GPU check (bench/gpu_check.sh): worker scaling, saturation with CPU and GPU decoding,
GPU memory over varied batches, a batch-size sweep; rendered into docs/gpu.md."""
