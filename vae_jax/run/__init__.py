"""The run: the loop, its directory, checkpoints, evaluation and loading.

    loop            train_and_evaluate(config, workdir)
    stages          the model check, an epoch's end, the final measurements
                    (shared by a run and a sweep's members)
    programs        a config → the compiled programs' static and traced inputs
    outputs         epoch records, log lines, figures, TensorBoard images
    evaluate        evaluate_run(workdir, ...) → eval.json
    load            load_run(workdir) → (config, model, params), for notebooks
    early_stopping, memory, tensorboard, mesh, distributed

    store/          the run directory on disk (`vae_jax.run.store`):
      workdir       config.json, resume and directory checks
      files         small files written atomically
      metrics       metrics.jsonl
      lock          one training process per run directory
      resume        the newest intact checkpoint, or a start over
      checkpoints   orbax checkpoints: latest/ and best/, verified restores
      integrity     checksums, file and room checks, orbax's noise

    sweep/          a sweep (`vae_jax.run.sweep`: run_sweep, plan_sweep):
      driver        run_sweep(plan, sweep_dir): members group by group
      grid          --sweep specs × seeds → members, groups, sweep.json
      group         a group's members vmapped as one program
      stack         the member axis: states stacked and split
      summary       summary.csv, summary.md, comparison.png

What is measured on a data set (log p(x), the gap, latent usage) is
`vae_jax.evaluation`.
"""
