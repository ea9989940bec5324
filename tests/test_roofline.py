"""bench/roofline.py: it runs, and its counts agree with the layers they are read from."""
import pytest

from sg3stream.bench.roofline import (OPS, PEAKS, layer_ops, main, markdown, modulated_conv_flops, roofline,
                                      synthesis_network, synthesis_ops)


@pytest.fixture(scope="module")
def network():
    return synthesis_network("sg3-r-1024")


@pytest.fixture(scope="module")
def result():
    return roofline("sg3-r-1024", batch=8, with_encoder=False)


def test_modulated_conv_flops_are_two_n_cout_cin_k_k_h_w(network):
    for name in network.layer_names:
        layer = getattr(network, name)
        conv = layer_ops(name, layer, batch=8, fp16=True)[0]
        size = layer.in_size + layer.conv_kernel - 1
        assert conv.op == "modulated_conv2d"
        assert conv.flops == 2 * 8 * layer.out_channels * layer.in_channels * layer.conv_kernel ** 2 * size * size
    assert modulated_conv_flops(1, 2, 3, 3, 4, 5) == 2 * 2 * 3 * 9 * 20


def test_totals_are_the_sums_of_the_layers_and_scale_with_the_batch(network, result):
    for precision, data in result["precisions"].items():
        ops = synthesis_ops(network, 8, fp16=precision == "fp16")
        for kind in OPS:
            assert data["ops"][kind]["flops"] == pytest.approx(sum(o.flops for o in ops if o.op == kind))
            assert data["ops"][kind]["bytes_fused"] <= data["ops"][kind]["bytes_torch"]
    one = synthesis_ops(network, 1, fp16=True)
    eight = synthesis_ops(network, 8, fp16=True)
    assert sum(o.flops for o in eight) == pytest.approx(8 * sum(o.flops for o in one))
    # fp16 halves the bytes of the fp16 layers only; the FLOPs do not change
    fp32 = synthesis_ops(network, 8, fp16=False)
    assert sum(o.flops for o in fp32) == pytest.approx(sum(o.flops for o in eight))
    assert sum(o.bytes_fused for o in eight) < sum(o.bytes_fused for o in fp32)


def test_a_synthesis_is_about_the_flop_counters_448_gflop(result):
    # README: 448 GFLOP per sg3-r-1024 synthesis by torch.utils.flop_counter (the convolutions it issues: the
    # modulated convolutions and the filters' depthwise convolutions)
    per_image = sum(result["precisions"]["fp16"]["ops"][k]["flops"] for k in ("modulated_conv2d", "upfirdn2d")) / 8
    assert 420e9 < per_image < 480e9


def test_bounds_are_the_slower_of_compute_and_memory_and_the_h200_is_not_slower(result):
    for data in result["precisions"].values():
        for row in data["ops"].values():
            assert row["H200 SXM"]["seconds"] <= row["H100 SXM"]["seconds"] + 1e-12
            assert row["H100 SXM"]["bound"] in ("compute", "memory")
        for gpu in PEAKS:
            kernels, torch_ops = data["stages"][gpu]["kernels"], data["stages"][gpu]["torch ops"]
            assert kernels["render_fps"] >= torch_ops["render_fps"] > 0
            assert kernels["inversion_fps"] < kernels["render_fps"]  # two syntheses per frame, plus the encoder
    table = markdown(result)
    assert "| fp16 | modulated_conv2d |" in table and "H200 SXM" in table


def test_the_script_runs(capsys):
    # in this process (torch is imported already); `python bench/roofline.py` calls the same main()
    assert main(["--markdown", "--no-encoder"]) == 0
    printed = capsys.readouterr().out
    assert "Roofline of `sg3-r-1024`" in printed and "GPU-bound end to end" in printed
    assert main(["--config", "no-such-generator", "--no-encoder"]) == 2
