"""One run: the loop, its host side, evaluation and loading.

    loop            train_and_evaluate(config, workdir)
    context         RunContext (what stays fixed) and RunTracker (where the
                    run is: history, early stopping, the epoch's chunks),
                    shared by a single run and a sweep's members
    stages          the checks: the model against data and memory, why a
                    non-finite chunk or evaluation stops a run
    programs        a config → the compiled programs' static and traced inputs
    outputs         epoch records, log lines, figures, TensorBoard images
    evaluate        evaluate_run(workdir, ...) → eval.json
    load            load_run(workdir) → (config, model, params), for notebooks
    early_stopping, memory, tensorboard, mesh, distributed

Below it, `vae_jax.store` keeps the run directory on disk; above it,
`vae_jax.sweep` trains many runs. What is measured on a data set (log p(x),
the gap, latent usage) is `vae_jax.evaluation`.
"""
