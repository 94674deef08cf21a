"""Benchmarks of the Coditect backend: ``python -m bench.run`` writes ``bench/results.md``.

Modules: ``loadgen`` (HTTP load: wrk when installed, else an asyncio + aiohttp generator in its own
process), ``system`` (the whole system under the supervisor on free ports), and one module per
benchmark: ``store``, ``gateway``, ``login``, ``tokens``.
"""
