"""The per-image work of the slow checks (re-detection, residual scan), in worker processes.

The main process reads each image's published copies (their JPEG bytes) in release order and hands them out;
each worker builds its detectors once (``Recipe``), decodes the copies and runs the check's per-image function.
Results come back in the order the images were handed out, so a check's findings are the same, in the same order,
with any number of workers. Copies whose decoded pixels are identical (the Parquet and images/ copies of an image)
are examined once: the integrity and metadata checks verify every copy is the same pixels; where two copies'
pixels differ, each distinct set of pixels is examined.
"""
from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from veilset.audit.imaging import decode_rgb
from veilset.audit.release import Release
from veilset.release.fingerprint import pixels_sha256

Copies = Sequence[tuple[str, bytes]]  # (file, JPEG bytes) of one image's published copies, distinct bytes
IN_FLIGHT_PER_WORKER = 2  # images handed out ahead per worker: the rest wait unread (memory: a few images)


def default_workers() -> int:
    """``--workers`` default: one per core."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Recipe:
    """How a worker builds its state (its detectors) once: ``fn(*args)``; both must pickle (a module-level
    function and plain arguments: specs, a release folder)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()

    def build(self) -> Any:
        return self.fn(*self.args)


def distinct_pixels(copies: Copies) -> list[tuple[str, np.ndarray]]:
    """(file, RGB pixels) of each copy whose decoded pixels differ from every earlier copy's; undecodable
    copies are skipped (the integrity check reports them)."""
    out, seen = [], set()
    for file, data in copies:
        try:
            pixels = decode_rgb(data)
        except Exception:  # noqa: BLE001 - integrity reports undecodable images
            continue
        key = pixels_sha256(pixels)
        if key not in seen:
            seen.add(key)
            out.append((file, pixels))
    return out


def image_copies(release: Release, image_ids: Iterable[str]) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """(image_id, [(file, bytes)] of its copies with distinct bytes), in ``Release.iter_copies_of`` order."""
    for image_id, copies in release.iter_copies_of(image_ids):
        seen: set[bytes] = set()
        distinct = []
        for copy in copies:
            if copy.data not in seen:
                seen.add(copy.data)
                distinct.append((copy.file, copy.data))
        yield image_id, distinct


_STATE: Any = None  # a worker's state (``Recipe.build``), built once by ``_start``


def _start(recipe: Recipe) -> None:
    global _STATE
    _STATE = recipe.build()


def _run(work: Callable[..., Any], image_id: str, copies: Copies, extra: Any) -> Any:
    return work(_STATE, image_id, copies, extra)


def map_images(release: Release, image_ids: Sequence[str], work: Callable[..., Any], *,
               local: Callable[[], Any] = lambda: None, recipe: Recipe | None = None, extra: Callable[[str], Any] = lambda _: None,
               workers: int = 1) -> Iterator[tuple[str, Any]]:
    """(image_id, ``work(state, image_id, copies, extra(image_id))``) for each wanted image, in release order.

    ``workers`` <= 1 or no ``recipe`` (injected detectors): here, with the state ``local()`` builds. Else in that
    many worker processes (spawned: no model's threads are forked), each with the state ``recipe`` builds;
    ``work`` must then be a module-level function. The progress hook
    (``release.on_image``) moves when an image's result is in."""
    tick, release.on_image = release.on_image, None
    try:
        items = ((i, copies, extra(i)) for i, copies in image_copies(release, image_ids))
        n = min(workers, len(image_ids))
        results = _here(work, local, items) if n <= 1 or recipe is None else _pooled(work, recipe, items, n)
        for image_id, result in results:
            yield image_id, result
            if tick is not None:
                tick()
    finally:
        release.on_image = tick


def _here(work: Callable[..., Any], local: Callable[[], Any],
          items: Iterable[tuple[str, Copies, Any]]) -> Iterator[tuple[str, Any]]:
    state = local()
    for image_id, copies, extra in items:
        yield image_id, work(state, image_id, copies, extra)


def _pooled(work: Callable[..., Any], recipe: Recipe, items: Iterable[tuple[str, Copies, Any]],
            workers: int) -> Iterator[tuple[str, Any]]:
    pending: deque[tuple[str, Future]] = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start, initargs=(recipe,)) as pool:
        for image_id, copies, extra in items:
            pending.append((image_id, pool.submit(_run, work, image_id, copies, extra)))
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                image_id, future = pending.popleft()
                yield image_id, future.result()
        while pending:
            image_id, future = pending.popleft()
            yield image_id, future.result()
