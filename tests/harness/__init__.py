"""The one test harness, shared by tests/, bench/ and scripts/chaos, one module per concept:

- ``services``: shared leases on the test bed's Kafka broker and PostgreSQL server, services of a test's
  own (restartable), ports and processes of the scripts/ helpers;
- ``database``: a fresh PostgreSQL database per test, an outage injected into an engine;
- ``kafka``: topics, the one producer helper, the one read-to-end helper, latest offsets;
- ``processes``: the Overlord, MiddleManagers and task processes: start, stop, kill -9, SIGSTOP;
- ``specs``: supervisor spec builders and the events they read; ``segments``: what got published;
- ``http``: the one HTTP request helper, servers run from a thread;
- ``stub_overlord``: stand-ins for the Overlord (heartbeat answers, task actions).
"""
