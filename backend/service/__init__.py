"""The backend service behind `gen3dface serve` (see README.md in this folder).

    config.py     ServiceConfig (one dataclass)
    server.py     Server: ROUTER socket loop, message handlers, heartbeats, lost clients
    jobqueue.py   bounded FIFO of waiting jobs (QUEUE_FULL at once)
    jobs.py       job records, idempotency keys, kept results, persistence in a state folder
    worker.py     the worker thread that runs the workload; OOM and error handling
    workload.py   the workload interface and the real HeadPipeline behind it
    checks.py     cheap input checks on submit (image header, rig, options, key)
    wire.py       the service's side of gen3dface.protocol (codec, socket options)
    harness.py    TEST HARNESS ONLY: synthetic workload, in-thread/in-process servers, raw client
"""
