"""Regenerate the bundled examples' weights (seeded, He-scaled): python examples/make_weights.py"""

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(2026)
    np.savez(HERE / "mlp.npz", w1=he(rng, (64, 128), 64), b1=he(rng, (128,), 64) * 0.1,
             w2=he(rng, (128, 10), 128), b2=he(rng, (10,), 128) * 0.1)
    np.savez(HERE / "conv_block.npz", w=he(rng, (32, 16, 3, 3), 16 * 9), w_scale=np.float32(0.5),
             gamma=(1 + 0.1 * rng.standard_normal(32)).astype(np.float32),
             beta=(0.1 * rng.standard_normal(32)).astype(np.float32),
             mean=(0.1 * rng.standard_normal(32)).astype(np.float32),
             var=(0.5 + rng.random(32)).astype(np.float32))
    np.savez(HERE / "attention.npz", wq=he(rng, (32, 16), 32), wk=he(rng, (32, 16), 32), wv=he(rng, (32, 16), 32))


if __name__ == "__main__":
    main()
