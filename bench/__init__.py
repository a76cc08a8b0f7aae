"""lbcore's benchmark harness: lbcore beside haproxy, nginx, stunnel and a naive
asyncio proxy, on one machine, in one run, per server CPU-second.

Run it with ``python -m bench`` (see ``bench.cli``); the scenarios are in
``bench.scenarios``, the equivalent configurations in ``bench.configs``, how a run
goes in ``bench.run``; results land in ``bench/results/``.
"""
