"""`sg3stream farm`: many jobs and long clips on a Ray cluster, resumable and headless.

    jobs.py      the job file: jobs, their run options, validation
    segments.py  a clip cut into segments with enough context frames for every windowed stage
    manifest.py  OUTPUT.manifest.json: what is done, with checksums, written atomically
    worker.py    one segment through the normal pipeline (runs in a Ray worker)
    join.py      the segments' frames into the final output, with the input's timestamps and audio
    runner.py    Ray orchestration: submit, retry dead workers, join, skip finished work
    status.py    the state of a job file's jobs, from their manifests
"""
