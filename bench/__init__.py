"""Benchmarks of the Coditect backend: ``python -m bench.run`` writes ``bench/results.md``.

Modules: ``loadgen`` (HTTP load: wrk when installed, else an asyncio + aiohttp generator in its own
process), ``system`` (the whole system under the supervisor on free ports, and the reference servers),
one module per benchmark (``gateway``: the request path against its references; ``login``; ``store``,
written to ``bench/store-results.md``), and the references' own servers (``trivial_server``,
``bare_hop``, ``fastapi_ref``).
"""
