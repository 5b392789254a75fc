"""A pytest plugin that runs the collected tests in reverse order.

    PYTHONPATH=tests python -m pytest -p helpers.reverse_order

Shared fixtures (session- and module-scoped runs, the zoo home, environment variables)
must not leak state from one test into the next: running the suite backwards as well as
forwards shows that no test passes only because another ran before it.
"""


def pytest_collection_modifyitems(session, config, items):
    items.reverse()
