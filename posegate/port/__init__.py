"""Auditing a team's own port: the files its preprocess script, device run and postprocess script wrote.

Each model declares its port's files in its own folder (``models/<name>/port.py``: a ``PortLayout`` on
``spec.port``); the audits here are generic over that declaration and reuse the suite's own
preprocessing, network, decoders and metrics. Modules: ``options`` (--port), ``layout`` (what a model
declares), ``readers`` (streaming file readers: dtype by size, ais_bench and benchmark folders),
``explain`` (candidate transformations per KIND), ``stages`` (the inputs, outputs and results audits),
``cost`` (what each stage costs in the metric) and ``zoo`` (port-like files, faithful and broken).
"""
