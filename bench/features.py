"""Benchmark: images per second of the whole features stage against the network alone.

On the images of ``--images`` (default: the demo MegaDepth root) with the backbone
``--model`` (default: the demo backbone demo-croco-vit), in one run:

- the whole stage's work (:func:`vcat.features.run.extract_all` then the assembly of the
  finished file: reading, decoding, resizing, depth, forward, writing parts, writing the
  file) into a fresh temporary folder;
- the forward pass alone (:class:`vcat.features.extract.Extractor`, input on the device and
  outputs back on the CPU) on the same batches, prepared beforehand and held in memory;

each best of ``--repeats``, and the ratio stage / forward (the target is 0.8 or more: the
reading and writing hide behind the network). ``--random-weights`` builds the architecture
with seeded weights instead of the verified checkpoint (the speed is the same), for a checkout
that has not trained or pulled it.

    python bench/features.py [--model NAME] [--images ROOT] [--device auto|cpu|cuda]
        [--batch-size 32] [--workers 2] [--repeats 3] [--random-weights]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vcat.devices import resolve_device
from vcat.features import h5layout
from vcat.features.extract import Extractor
from vcat.features.images import find_items, prepare
from vcat.features.parts import group_reader, partial_folder
from vcat.features.run import batches, extract_all
from vcat.models.factory import build_model, input_config, model_entry
from vcat.project import find_project_root


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-croco-vit")
    parser.add_argument("--images", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--random-weights", action="store_true")
    args = parser.parse_args()

    project = find_project_root()
    root = args.images or project / "data" / "sources" / "demo-megadepth"
    entry = model_entry(args.model, project)
    config = input_config(entry)
    device = resolve_device(args.device)
    if args.random_weights:
        torch.manual_seed(0)
    model = build_model(entry, project, load_weights=not args.random_weights)
    extractor = Extractor(model, config.width, config.mean, config.std, device)
    items = find_items(root)
    settings = {"interpolation": "area", "store_depth": True}

    cut = batches(len(items), args.batch_size)
    held = []
    for batch in cut:
        prepared = [prepare(items[i], config.width, **settings) for i in batch]
        images = torch.stack([torch.from_numpy(p.image) for p in prepared if p.image is not None])
        held.append(images.pin_memory() if extractor.cuda else images)
    extractor(held[0])  # warm-up

    forward_s = stage_s = float("inf")
    for _ in range(args.repeats):
        _sync(device)
        start = time.perf_counter()
        for images in held:
            extractor(images)
        _sync(device)
        forward_s = min(forward_s, time.perf_counter() - start)

        with tempfile.TemporaryDirectory() as folder:
            output = Path(folder) / "overlap_feats.h5"
            start = time.perf_counter()
            done = extract_all(
                items,
                extractor,
                partial_folder(output),
                "bench",
                batch_size=args.batch_size,
                workers=args.workers,
                **settings,
            )
            h5layout.assemble(output, "bench", done.where, group_reader(done.where))
            stage_s = min(stage_s, time.perf_counter() - start)
            size = output.stat().st_size

    count = len(items)
    print(f"{count} images from {root}, {args.model} at {config.width}x{config.height}")
    print(f"device {device}, batch {args.batch_size}, workers {args.workers}, ", end="")
    print(f"best of {args.repeats}; output {size / 1e6:.1f} MB")
    print(f"forward alone: {count / forward_s:10.1f} images/s ({forward_s:.3f} s)")
    print(f"whole stage:   {count / stage_s:10.1f} images/s ({stage_s:.3f} s)")
    print(f"ratio stage / forward: {forward_s / stage_s:.2f}x (target >= 0.8x)")


if __name__ == "__main__":
    main()
