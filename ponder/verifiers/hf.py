"""Loading Hugging Face verifier models from a folder, and running their forward passes off the event loop."""

from __future__ import annotations

import asyncio
import copy
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.core import sidecar as core_sidecar
from ponder.core.aggregate import aggregate
from ponder.verifiers.base import split_completion, split_steps

# Verifiers that read a request's answers as a prefix tree (TreeReader) pass a 4D attention mask, which
# flash-attention kernels ignore: their language models are loaded with PyTorch's scaled-dot-product attention.
TREE_ATTENTION = "sdpa"
QUESTION_CACHE_BYTES = 64 << 20  # KV caches of recent questions a tree-reading verifier keeps (``cache_mb`` in a spec)

WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


class VerifierLoadError(ValueError):
    """A verifier spec, folder or file that cannot be loaded; the message says why and what would work."""


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a clear error when it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerifierLoadError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise VerifierLoadError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_sidecar(folder: Path) -> dict[str, Any]:
    """The folder's ``ponder.json`` as a dict (empty when absent), read by the one reader in ``ponder.core.sidecar``."""
    try:
        return core_sidecar.read_sidecar(folder).as_dict()
    except core_sidecar.SidecarError as exc:
        raise VerifierLoadError(str(exc)) from None


def check_model_folder(folder: str | Path) -> Path:
    """``folder`` if it holds a Hugging Face model (config, weights, tokenizer); a clear error otherwise."""
    path = Path(folder)
    if not path.exists():
        raise VerifierLoadError(f"verifier path {path} does not exist")
    if not path.is_dir():
        raise VerifierLoadError(f"{path} is a file, not a model folder")
    if not (path / "config.json").is_file():
        raise VerifierLoadError(f"{path} is not a model folder: it has no config.json")
    if not any((path / name).is_file() for name in WEIGHT_FILES) and not any(path.glob("model-*.safetensors")):
        raise VerifierLoadError(f"{path} has a config.json but no weights (model.safetensors)")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise VerifierLoadError(f"{path} has no tokenizer (tokenizer.json / tokenizer_config.json)")
    return path


def pick_device(device: str | None) -> str:
    """``device`` or, when None, CUDA if there is one, else the CPU."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(folder: Path) -> Any:
    """The folder's fast tokenizer with a pad token (batched scoring pads; EOS stands in when there is none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # a broken tokenizer file surfaces as many exception types
        raise VerifierLoadError(f"{folder}: cannot load its tokenizer: {exc}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise VerifierLoadError(f"{folder}: verifiers need a fast tokenizer (tokenizer.json) for token offsets")
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise VerifierLoadError(f"{folder}: the tokenizer has neither a pad nor an EOS token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(folder: Path, auto_class: str, device: str, **kwargs: Any) -> Any:
    """``transformers.<auto_class>.from_pretrained(folder)`` in eval mode; refuse a checkpoint missing weights.

    A head that is missing from the checkpoint would be initialised at random and score noise, so it is an error.
    """
    import transformers

    cls = getattr(transformers, auto_class)
    dtype = "auto" if device.startswith("cuda") else "float32"
    try:
        model, info = cls.from_pretrained(folder, output_loading_info=True, dtype=dtype, **kwargs)
    except Exception as exc:  # corrupt or mismatched weights surface as many exception types
        raise VerifierLoadError(f"{folder}: cannot load it as {auto_class}: {exc}") from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise VerifierLoadError(
            f"{folder}: the checkpoint lacks weights that {type(model).__name__} needs ({', '.join(missing[:5])}); "
            "it is not a model of this kind"
        )
    return model.to(device).eval()


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, device: str) -> tuple[Any, Any]:
    """Right-padded ``input_ids`` and ``attention_mask`` tensors."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def length_chunks(lengths: Sequence[int], max_tokens: int, packed: bool = False) -> list[list[int]]:
    """Indices grouped, shortest first, so that a chunk holds at most ``max_tokens`` tokens (or one row): padded to
    its longest row, or ``packed`` into one row end to end."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    chunks: list[list[int]] = []
    for i in order:
        if chunks:
            last = chunks[-1]
            size = sum(lengths[j] for j in last) + lengths[i] if packed else lengths[i] * (len(last) + 1)
            if size <= max_tokens:
                last.append(i)
                continue
        chunks.append([i])
    return chunks


def common_prefix_len(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row shares."""
    n = 0
    for column in zip(*rows, strict=False):
        if any(t != column[0] for t in column):
            break
        n += 1
    return n


def continue_batch(model: Any, cache: Any, n: int, tails: Sequence[Sequence[int]], pad_id: int, device: str) -> Any:
    """Run ``tails`` (right-padded) as continuations of one prefix of ``n`` tokens whose KV ``cache`` is given: the
    prefix is computed once for every row, and ``cache`` is left as it was. Returns the model's output and the tail
    ids."""
    import torch

    ids, mask = pad_batch(tails, pad_id, device)
    cache = copy.deepcopy(cache)  # the next chunk, and the next request, need the prefix's cache intact
    cache.batch_repeat_interleave(len(tails))
    full_mask = torch.cat([torch.ones(len(tails), n, dtype=mask.dtype, device=device), mask], dim=1)
    positions = torch.arange(n, n + ids.shape[1], device=device).expand(len(tails), -1)
    return model(input_ids=ids, attention_mask=full_mask, past_key_values=cache, position_ids=positions), ids


def cache_bytes(cache: Any) -> int:
    """Bytes a model's KV cache holds (its layers' key and value tensors)."""
    total = 0
    for layer in getattr(cache, "layers", ()):
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if tensor is not None and hasattr(tensor, "numel"):
                total += tensor.numel() * tensor.element_size()
    return total


@dataclass(frozen=True)
class QuestionState:
    """A question read by the model: its KV cache, the logits after its last token, and the bytes the cache holds."""

    cache: Any
    last_logits: Any  # 1-D, the prediction of the first token after the question
    nbytes: int


@dataclass(frozen=True)
class TokenTrie:
    """Token sequences as a prefix tree: ``tokens[i]`` at ``depth[i]`` under ``parent[i]`` (-1: a root), in the order
    they were met, so a parent always comes before its children; ``paths[r]`` are the nodes of sequence ``r``."""

    tokens: list[int]
    parent: list[int]
    depth: list[int]
    paths: list[list[int]]

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]]) -> TokenTrie:
        trie = cls([], [], [], [])
        children: dict[tuple[int, int], int] = {}
        for row in rows:
            path, node = [], -1
            for token in row:
                child = children.get((node, token))
                if child is None:
                    child = children[node, token] = len(trie.tokens)
                    trie.tokens.append(token)
                    trie.parent.append(node)
                    trie.depth.append(len(path))
                node = child
                path.append(node)
            trie.paths.append(path)
        return trie


def trie_inputs(past: int, question: Sequence[int], trie: TokenTrie, dtype: Any, device: str) -> tuple:
    """``(input_ids, position_ids, attention_mask)`` reading ``question`` (when not among the ``past`` cached tokens)
    and then every node of ``trie`` in one row: the question causally; each node the question, its ancestors and
    itself, at the position it has in its own sequences (a 4D additive mask: tree attention)."""
    import torch

    q, nodes = len(question), len(trie.tokens)
    total = q + nodes
    allowed = torch.zeros(total, past + total, dtype=torch.bool)
    allowed[:, :past] = True
    allowed[:q, past : past + q] = torch.ones(q, q, dtype=torch.bool).tril()
    allowed[q:, past : past + q] = True
    for i, parent in enumerate(trie.parent):  # a parent's row is complete before its children's
        row = q + i
        if parent >= 0:
            allowed[row, past + q : past + q + nodes] = allowed[q + parent, past + q : past + q + nodes]
        allowed[row, past + row] = True
    mask = torch.zeros(total, past + total, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    positions = [*range(q), *(past + q + d for d in trie.depth)]
    return (
        torch.tensor([[*question, *trie.tokens]], device=device),
        torch.tensor([positions], device=device),
        mask[None, None].to(device),
    )


class TreeReader:
    """Reads the answers to a question as a prefix tree in one forward pass, and keeps the questions it read lately.

    A request's answers share their question and often their first steps, and many repeat one another. One row holds
    the question and then the answers as a prefix tree, each token read once, seeing the question, the tokens before
    it in its own answers and itself (tree attention): nothing is read twice and nothing is padded. A search scores
    answers to one question many times (each step of a beam search, each round of self-refinement): the question's
    KV cache is kept, and later passes read only the answers. The least recently used questions go once
    ``max_bytes`` are held. A pass holds at most ``max_tokens`` answer tokens (its mask grows with their square).
    Only the verifier's worker thread uses it, so it takes no lock.
    """

    def __init__(self, model: Any, device: str, max_bytes: int = QUESTION_CACHE_BYTES, max_tokens: int = 2048) -> None:
        self.model = model
        self.device = device
        self.max_bytes = max_bytes
        self.max_tokens = max_tokens
        self._entries: OrderedDict[tuple[int, ...], QuestionState] = OrderedDict()
        self._held = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def read(self, question: Sequence[int], answers: Sequence[Sequence[int]]) -> list[Any]:
        """Per answer (each at least one token), the logits at each of its tokens: row ``i`` predicts token ``i``."""
        out: list[Any] = [None] * len(answers)
        for chunk in length_chunks([len(a) for a in answers], self.max_tokens, packed=True):
            for i, logits in zip(chunk, self._read(tuple(question), [answers[i] for i in chunk]), strict=True):
                out[i] = logits
        return out

    def _read(self, key: tuple[int, ...], answers: Sequence[Sequence[int]]) -> list[Any]:
        import torch

        state = self._entries.get(key)
        if state is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        trie = TokenTrie.of(answers)
        fresh = [] if state is not None else list(key)  # the question is read unless it is held
        past = len(key) if state is not None else 0
        input_ids, positions, mask = trie_inputs(past, fresh, trie, self.model.dtype, self.device)
        keep = state is None and self.max_bytes > 0
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=copy.deepcopy(state.cache) if state is not None else None,  # the next pass needs it intact
            use_cache=keep,
            logits_to_keep=len(trie.tokens) + 1 if state is None else len(trie.tokens),  # none over the question
        )
        logits = out.logits[0]
        first, nodes = (logits[0], logits[1:]) if state is None else (state.last_logits, logits)
        if keep:  # the question alone is what later passes share
            kept = out.past_key_values
            kept.crop(len(key) - kept.get_seq_length())  # a negative crop drops that many tokens from the end
            self._keep(key, QuestionState(kept, first, cache_bytes(kept)))
        # token i of an answer is predicted after token i - 1 (node path[i - 1]); token 0 after the question
        return [torch.cat([first[None], nodes[path[:-1]]]) for path in trie.paths]

    def _keep(self, key: tuple[int, ...], state: QuestionState) -> None:
        self._entries[key] = state
        self._held += state.nbytes
        while self._held > self.max_bytes and self._entries:
            self._held -= self._entries.popitem(last=False)[1].nbytes


def model_max_len(model: Any, tokenizer: Any) -> int:
    """Longest input the model takes: its position limit, or the tokenizer's if that is smaller."""
    limit = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    tok_limit = getattr(tokenizer, "model_max_length", None) or 1 << 30
    return int(min(limit, tok_limit if tok_limit < 1 << 30 else limit))


class BatchedOutcomeVerifier:
    """What a model-backed outcome verifier serves through its :class:`MicroBatcher`: one score per answer.

    A subclass sets ``_batcher``, running its batch scorer over ``(problem, answer)`` items.
    """

    step_level = False
    kind = "orm"
    _batcher: MicroBatcher

    async def score(self, problem: Any, answers: Sequence[str], reference: str | None = None) -> list[float]:
        """One score per answer (higher is better); ``reference`` is not used (the model judges on its own)."""
        return await self._batcher.run([(problem, answer) for answer in answers])

    @property
    def batches_run(self) -> int:
        return self._batcher.batches

    async def aclose(self) -> None:
        self._batcher.close()


class BatchedStepVerifier:
    """What a model-backed step verifier serves through its :class:`MicroBatcher`: step scores, aggregated scores.

    A subclass sets ``_batcher`` (running its batch scorer), ``separator``, ``think_tags`` and ``aggregation``.
    """

    step_level = True
    _batcher: MicroBatcher
    separator: str
    think_tags: tuple[str, str]
    aggregation: str
    scores_answer: bool = False  # also reads a finished solution's answer, as one more item after its steps

    async def score_steps(self, problem: Any, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """One score in [0, 1] per step per solution; steps are given without separators."""
        return await self._batcher.run([(problem, list(steps)) for steps in solutions])

    async def score(self, problem: Any, answers: Sequence[str], reference: str | None = None) -> list[float]:
        """The aggregated step scores of each answer; ``reference`` is not used."""
        per_step = await self.score_steps(problem, [self.steps(answer) for answer in answers])
        return [aggregate(scores, self.aggregation) for scores in per_step]

    def steps(self, answer: str) -> list[str]:
        """The steps this verifier sees in a completion; and where it ``scores_answer``, a finished think block's
        answer as one more item, ``think_close + answer``."""
        steps = split_steps(answer, self.separator, self.think_tags)
        if self.scores_answer:
            reasoning, content, closed = split_completion(answer, self.think_tags)
            if closed and reasoning.strip() and self.think_tags[1] in answer:
                steps.append(self.think_tags[1] + content.strip())
        return steps

    @property
    def batches_run(self) -> int:
        return self._batcher.batches

    async def aclose(self) -> None:
        self._batcher.close()


DEFAULT_THREADS = 1  # torch threads of a verifier's forward passes, unless its spec says ``threads=N``


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class MicroBatcher:
    """Runs ``fn(items) -> results`` in one worker thread, merging the items of concurrent calls into one batch.

    One thread per model keeps concurrent requests from oversubscribing the CPU; while a batch runs, new calls
    queue up and go together in the next one. That thread's forward passes use ``threads`` torch threads (the
    setting is per thread, so the engine's own keep theirs). One by default: the engine generates on the same
    cores, and a second multi-threaded pool waits on a busy core at every barrier (docs/results/verifiers.md).
    """

    def __init__(
        self,
        fn: Callable[[list[Any]], list[Any]],
        *,
        max_items: int = 64,
        name: str = "verifier",
        threads: int = DEFAULT_THREADS,
    ) -> None:
        if threads < 1:
            raise ValueError(f"verifier threads must be at least 1, got {threads}")
        self._fn = fn
        self._max_items = max_items
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=_set_torch_threads, initargs=(threads,)
        )
        self._queue: list[tuple[Any, asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None
        self.batches = 0  # forward batches run so far (tests and metrics)

    async def run(self, items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._queue.extend(zip(items, futures, strict=True))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return list(await asyncio.gather(*futures))

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        live: list[tuple[Any, asyncio.Future]] = []
        try:
            while self._queue:
                taken, self._queue = self._queue[: self._max_items], self._queue[self._max_items :]
                live = [(item, fut) for item, fut in taken if not fut.done()]  # cancelled callers drop out
                if not live:
                    continue
                self.batches += 1
                try:
                    results = await loop.run_in_executor(self._executor, self._fn, [item for item, _ in live])
                except Exception as exc:
                    for _, fut in live:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), result in zip(live, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            for _, fut in live + self._queue:
                if not fut.done():
                    fut.set_exception(RuntimeError("verifier batcher stopped"))
            self._queue = []

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
