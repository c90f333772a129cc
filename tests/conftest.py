"""Registers the shared fixture modules of tests/support for every test."""

pytest_plugins = [
    "tests.support.opa",
    "tests.support.jaeger",
    "tests.support.clock",
    "tests.support.postgres",
    "tests.support.job_store",
    "tests.support.kube",
    "tests.support.reconcile",
]
