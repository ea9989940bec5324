"""bench_pti on the CPU with the demo generator: steps/s per ops implementation; 'cuda' is skipped with a reason
where there is no GPU."""
import torch

from sg3stream.bench.pti import bench_pti


def test_bench_pti_reports_steps_per_second_and_skips_what_cannot_run():
    rows = bench_pti("demo", batch_sizes=[1], device="cpu", ops_impl=["torch", "cuda"], steps=1)
    torch_row, cuda_row = rows
    assert torch_row["ops"] == "torch" and torch_row["ops_used"] == "torch" and torch_row["batch_size"] == 1
    assert torch_row["steps"] == 1 and torch_row["steps_per_s"] > 0 and "peak_memory_gib" not in torch_row
    if not torch.cuda.is_available():
        assert cuda_row["skipped"] and cuda_row["reason"]
