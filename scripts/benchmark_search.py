"""Exact against approximate (HNSW) FAISS search over unit-length embeddings, side by side at several collection sizes:
build time, time per single query, and the approximate index's recall of the exact 8 nearest neighbours.

    OMP_NUM_THREADS=1 python scripts/benchmark_search.py [--sizes 10000,50000] [--dim 512]

This is what `hf_simclr.search.index.APPROXIMATE_ABOVE` is chosen from. Random vectors are the hard case for HNSW
(no clusters), so the recall is a lower bound for real embeddings.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    import faiss

    from hf_simclr.search.index import HNSW, HNSW_EF_SEARCH

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("-k", type=int, default=8)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{'images':>9} {'exact build s':>14} {'exact ms/query':>15} {'HNSW build s':>13} {'HNSW ms/query':>14} "
        f"{'recall@' + str(args.k):>9}  ({args.dim}-d, {faiss.omp_get_max_threads()} thread(s))"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        data = rng.standard_normal((size, args.dim), dtype=np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        # a query near an indexed image (noise of norm ~0.2): what a search for similar images asks
        queries = data[rng.choice(size, args.queries, replace=False)] + 0.01 * rng.standard_normal(
            (args.queries, args.dim), dtype=np.float32
        )
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        results = {}
        for kind in ("Flat", HNSW):
            started = time.perf_counter()
            index = faiss.index_factory(args.dim, kind, faiss.METRIC_INNER_PRODUCT)
            index.add(data)
            build = time.perf_counter() - started
            if kind == HNSW:
                index.hnsw.efSearch = HNSW_EF_SEARCH
            started = time.perf_counter()
            found = [index.search(q[None], args.k)[1][0] for q in queries]  # one query at a time, as a person asks
            results[kind] = (build, 1000 * (time.perf_counter() - started) / args.queries, found)
        exact, approximate = results["Flat"], results[HNSW]
        recall = np.mean([len(set(a) & set(e)) / args.k for a, e in zip(approximate[2], exact[2], strict=True)])
        print(
            f"{size:>9,} {exact[0]:14.2f} {exact[1]:15.2f} {approximate[0]:13.1f} {approximate[1]:14.3f} {recall:9.3f}"
        )


if __name__ == "__main__":
    main()
