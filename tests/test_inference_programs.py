"""The program cache: a new process reuses the sampling program from disk (no tracing: the compiled
executable, or the traced program when the executable is gone), the cached and traced paths give the
same pixels, damaged cache files are only cache misses; the
parameter-shape memo that makes loading fast."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from controlsprint.inference import Control, InferenceCore, make_request
from controlsprint.models.pipeline import save_pipeline
from tests.conftest import REPO
from tests.test_inference import CONDITION
from tests.test_pipeline_folder import tiny_pipeline, with_live_zero_convs

CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from controlsprint.runtime import enable_compilation_cache
    enable_compilation_cache(sys.argv[2])
    from controlsprint.inference import program, programs, Control, make_request
    from controlsprint.inference.loading import load_core
    traced, direct = [], []
    sample, direct_call = program.sample, programs._direct_call
    program.sample = lambda *a, **k: traced.append(1) or sample(*a, **k)
    programs._direct_call = lambda executable: direct.append(1) or direct_call(executable)
    core = load_core(sys.argv[1])
    condition = np.load(sys.argv[3])
    image = core.generate(make_request("red circle", controls=[Control("canny", condition)], steps=3, seed=1))
    print(json.dumps({"traced": len(traced), "direct": len(direct), "image": image.tobytes().hex()}))
    """
)


@pytest.fixture(scope="module")
def pipe():
    return with_live_zero_convs(tiny_pipeline())


def _request(**overrides):
    return make_request(
        "red circle", **{"controls": [Control("canny", CONDITION, 0.8)], "steps": 3, **overrides}
    )


def test_second_process_loads_the_program_instead_of_tracing_it(pipe, tmp_path):
    folder = save_pipeline(tmp_path / "model", pipe)
    np.save(tmp_path / "condition.npy", CONDITION)
    cache = tmp_path / "cache"

    def child() -> dict:
        args = [sys.executable, "-c", CHILD, str(folder), str(cache), str(tmp_path / "condition.npy")]
        done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    programs = cache / "controlsprint" / "programs"
    first = child()
    assert first["traced"] == 1
    assert len(list(programs.glob("*.stablehlo"))) == len(list(programs.glob("*.executable"))) == 1
    second = child()  # runs the stored executable
    assert second["direct"] == 1
    (executable,) = programs.glob("*.executable")
    executable.unlink()
    third = child()  # reads the traced program back and XLA's cache compiles it
    assert second["traced"] == third["traced"] == third["direct"] == 0
    assert first["image"] == second["image"] == third["image"]
    assert not executable.exists(), "an executable XLA deserialised is not stored (it cannot be rerun)"


def test_cached_program_and_progress_program_agree(pipe):
    core = InferenceCore(pipe)
    cached = core.generate(_request())
    steps = []
    traced = core.generate(_request(), progress=lambda done, total: steps.append(done))
    assert sorted(steps) == [1, 2, 3]
    # Two programs (one with host callbacks) may fuse differently: a uint8 level at most.
    assert np.abs(cached.astype(int) - traced).max() <= 1 and cached.std() > 5


def test_programs_are_cached_per_shape_and_options(pipe):
    core = InferenceCore(pipe)
    core.generate(_request())
    core.generate(_request(seed=9))  # other values, same program
    assert len(core._programs) == 1
    core.generate(_request(num_images=2))
    core.generate(_request(guidance=1.0))  # no CFG: a different program
    assert len(core._programs) == 3


def test_damaged_program_file_is_only_a_cache_miss(pipe):
    import jax

    from controlsprint.runtime import artifact_dir

    expected = InferenceCore(pipe).generate(_request(steps=2))
    assert jax.config.jax_compilation_cache_dir, "conftest turns the compilation cache on"
    files = [*artifact_dir("programs").glob("*.stablehlo"), *artifact_dir("programs").glob("*.executable")]
    assert {path.suffix for path in files} == {".stablehlo", ".executable"}
    for path in files:
        if path.suffix == ".executable":  # the right header, the bytes cut short: the checksum catches it
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        else:
            path.write_bytes(b"not a program")
    again = InferenceCore(pipe).generate(_request(steps=2))  # a fresh core: only the disk could serve it
    assert np.array_equal(expected, again)
    assert any(p.suffix == ".stablehlo" and p.read_bytes() != b"not a program" for p in files), (
        "the program is written again"
    )


def test_parameter_shapes_memo_matches_tracing(tmp_path):
    import jax

    from controlsprint.models import components
    from controlsprint.models.configs import TINY_CONTROLNET
    from controlsprint.models.convert import flatten

    traced = jax.eval_shape(
        lambda: components.build_module(TINY_CONTROLNET).init(
            jax.random.key(0), *components.SPECS["controlnet"].dummy_inputs(TINY_CONTROLNET)
        )["params"]
    )
    memo = components._shape_memo_path(TINY_CONTROLNET)
    memo.unlink(missing_ok=True)
    first = components.abstract_params(TINY_CONTROLNET)  # traces, writes the memo
    assert memo.is_file()
    second = components.abstract_params(TINY_CONTROLNET)  # read back
    as_pairs = lambda tree: {k: (v.shape, v.dtype) for k, v in flatten(tree).items()}  # noqa: E731
    assert as_pairs(first) == as_pairs(second) == as_pairs(traced)
    memo.write_text("{ damaged")
    assert as_pairs(components.abstract_params(TINY_CONTROLNET)) == as_pairs(traced)
