"""The bundled policy served on CUDA by the in-process vLLM engine, asked through the openai SDK (``pytest -m gpu``)."""

from __future__ import annotations

import pytest

from ponder.core.sidecar import default_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not default_model(), reason="needs the bundled policy under ponder/models/policy"),
]
# Level-1 problems in the training template: the policy answers them greedily (97.5% at level 1, eval.json).
PROBLEMS = {
    "Solve the following multiplication: 5 * 4. Give only the result as your final answer.": ("20", "5*4=20"),
    "State the final answer to the following arithmetic problem: 1 - 2 - 3 =": ("-4", "1-2=-1\n-1-3=-4"),
}


@pytest.fixture(scope="module")
def target():
    # Checked here, not at collection: `make test` deselects gpu tests and should not pay for importing torch.
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA and the GPU build of vLLM (.[gpu])")
    from ponder.engines.settings import EngineSettings
    from ponder.eval.runner import Target
    from ponder.server.settings import ServerSettings

    engine = EngineSettings(
        kind="vllm",
        model=default_model(),
        served_model_names=("policy",),
        max_model_len=512,
        dtype="float32",
        gpu_memory_utilization=0.2,
        enforce_eager=True,  # no graph capture: the test makes a handful of requests
    )
    return Target(settings=ServerSettings(engine=engine), timeout=300)


async def test_greedy_answers_streamed_and_searched(target):
    from ponder.eval.runner import open_client

    async with open_client(target) as client:
        for question, (answer, steps) in PROBLEMS.items():
            messages = [{"role": "user", "content": question}]
            resp = await client.chat.completions.create(model="policy", messages=messages, max_tokens=64, temperature=0)
            message = resp.choices[0].message
            assert (message.content, resp.choices[0].finish_reason) == (answer, "stop")
            assert message.model_extra["reasoning_content"].strip() == steps
            assert resp.model_extra["ponder"]["spent"]["samples"] == 1

            stream = await client.chat.completions.create(
                model="policy", messages=messages, max_tokens=64, temperature=0, stream=True
            )
            deltas = [chunk.choices[0].delta async for chunk in stream if chunk.choices]
            assert "".join(d.content or "" for d in deltas) == answer

        # n samples in one engine call on the GPU, ranked by the verifier the policy recommends.
        question, (answer, _) = next(iter(PROBLEMS.items()))
        resp = await client.chat.completions.create(
            model="policy",
            messages=[{"role": "user", "content": question}],
            max_tokens=64,
            temperature=0.8,
            extra_body={"strategy": "best_of_n", "budget": {"max_samples": 8}},
        )
        ponder = resp.model_extra["ponder"]
        assert ponder["strategy"] == "best_of_n" and ponder["verifier"] == "calculator"
        assert ponder["spent"]["samples"] == 8 and resp.choices[0].message.content == answer
