"""A run directory on disk: its files, checkpoints, lock and resume.

    workdir       config.json, resume checks, directory checks (and the names
                  of files and metrics, re-exported)
    files         small files written atomically (a temporary file, a rename)
    metrics       metrics.jsonl: `EpochRecord`, read, append, rewrite
    lock          one training process per run directory
    checkpoints   orbax checkpoints: latest/ and best/, verified restores
    integrity     checksums, file and room checks, orbax's noise
    resume        the newest intact checkpoint, or a start over

Import the modules themselves (`from vae_jax.store import workdir`):
this file imports nothing, so the launchers check a directory (workdir,
lock: no JAX) before JAX starts.
"""
