"""The run: the loop, its directory, checkpoints, evaluation and loading.

    loop            train_and_evaluate(config, workdir)
    workdir         config.json, metrics.jsonl, resume and directory checks
    lock            one training process per run directory
    resume          the newest intact checkpoint, or a start over
    checkpoints     orbax checkpoints: latest/ and best/, verified restores
    integrity       checksums, file and room checks, orbax's noise
    programs        a config → the compiled programs' static and traced inputs
    outputs         epoch records, log lines, figures, TensorBoard images
    evaluate        evaluate_run(workdir, ...) → eval.json
    load            load_run(workdir) → (config, model, params), for notebooks
    sweep           run_sweep(plan, sweep_dir): members group by group
    sweep_grid      --sweep specs × seeds → members, groups, sweep.json
    sweep_group     a group's members vmapped as one program
    sweep_summary   summary.csv, summary.md, comparison.png
"""
