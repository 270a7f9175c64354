"""Genetic search in a FLOPs band (`jaxlab.nas.evolution`) and its random-search baseline.

Fitness of a genome = top-1 accuracy of its subnet with inherited superformer weights on held-out
images (bilateral: the mean of the left and right accuracies, as the released search). Genomes
`[patch, embed, ops(L), qkv(L), mlp(L)]` are canonicalised (identity shifting) by the GA's
repair when `identity_shifting`, so duplicates are removed on the canonical form. Constraint:
`flops_band_violation` of the analytic MACs; with `feasible_offspring` (default) out-of-band
offspring are redrawn before scoring, so every evaluation, like random search's, is in band.
A population is scored per patch size in one vmapped call (`jaxlab.nas.population`), padded to
the population size (one compile per patch).
"""

from __future__ import annotations

import numpy as np

from jaxlab.nas import evolution, population
from jaxlab.vitas import models
from jaxlab.vitas.space import ArchError, Space

RANDOM_STREAM = 21


def make_fitness(space: Space, params, x: np.ndarray, y: np.ndarray, pad_to: int):
    evals = {}

    def scorer(pi):
        if pi not in evals:
            def apply(p, xx, arch, side):
                return models.Superformer(space).apply({"params": p}, xx, arch, patch_index=pi, side=side)
            evals[pi] = {s: population.make_population_eval(lambda p, xx, a, s=s: apply(p, xx, a, s))
                         for s in space.sides()}
        return evals[pi]

    def fitness(genomes: np.ndarray) -> np.ndarray:
        archs = space.from_genome(genomes)
        # the release's set_subnet bug (`release_patch_bug`): every forward runs patch size 0
        patches = np.zeros_like(archs["patch"]) if space.cfg.release_patch_bug else archs["patch"]
        out = np.zeros(len(genomes))
        for pi in np.unique(patches):
            rows = np.nonzero(patches == pi)[0]
            for lo in range(0, len(rows), pad_to):
                part = rows[lo:lo + pad_to]
                sel = np.concatenate([part, np.full(pad_to - len(part), part[0])])
                sub = {k: v[sel] for k, v in archs.items()}
                accs = [np.asarray(population.accuracy_from_logits(f(params, x, sub), y))
                        for f in scorer(int(pi)).values()]
                out[part] = np.mean(accs, axis=0)[:len(part)]
        return out

    return fitness


def band_sampler(space: Space, p_id: float, band, shift: bool):
    lo, hi = band

    def sample(rng, n):
        got = []
        for _ in range(200):
            a = space.sample(rng, max(4 * n, 64), p_id, shift=shift)
            f = space.flops(a)
            g = space.to_genome(a)[(f >= lo) & (f <= hi)]
            got.append(g)
            if sum(len(x) for x in got) >= n:
                return np.concatenate(got)[:n]
        raise ArchError(f"no architecture in the FLOPs band [{lo:.4g}, {hi:.4g}] after 200 rounds of sampling")

    return sample


def run_search(space: Space, params, val, band, p_id: float, *, pop_size: int, generations: int, seed: int,
               shift: bool = True, feasible_offspring: bool = True, checkpoint=None) -> evolution.GAState:
    x, y = val
    lo, hi = band
    low, up = space.bounds()
    problem = evolution.Problem(
        lower=low, upper=up, fitness=make_fitness(space, params, x, y, pop_size),
        violation=lambda g: evolution.flops_band_violation(space.flops(space.from_genome(g)), (lo + hi) / 2,
                                                           (hi - lo) / 2),
        repair=(lambda g: space.to_genome(space.canonical(space.from_genome(g)))) if shift else None,
        sample=band_sampler(space, p_id, band, shift))
    cfg = evolution.GAConfig(pop_size=pop_size, num_generations=generations, feasible_offspring=feasible_offspring)
    return evolution.run(problem, cfg, seed, checkpoint=checkpoint)


def random_search(space: Space, params, val, band, p_id: float, n: int, *, pop_size: int, seed: int,
                  shift: bool = True) -> tuple[np.ndarray, float, np.ndarray]:
    """`n` distinct in-band samples scored like the GA's; returns (best genome, its fitness, all fitness)."""
    rng = np.random.default_rng([seed, RANDOM_STREAM])
    g = band_sampler(space, p_id, band, shift)(rng, 4 * n)
    _, first = np.unique(g, axis=0, return_index=True)
    g = g[np.sort(first)][:n]
    f = make_fitness(space, params, *val, pop_size)(g)
    i = int(np.argmax(f))
    return g[i], float(f[i]), f


def genome_to_arch(space: Space, g) -> dict:
    a = space.from_genome(np.asarray(g)[None])
    return {k: v[0] for k, v in a.items()}


def arch_json(space: Space, arch: dict) -> dict:
    return {k: np.asarray(v).tolist() for k, v in arch.items()} | {
        "flops": float(space.flops(arch)), "patch_size": space.patch_sizes[int(arch["patch"])],
        "embed_width": int(space.embed_widths[int(arch["embed"])]), "depth": int((np.asarray(arch["ops"]) > 0).sum())}


