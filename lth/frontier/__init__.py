"""The frontier sweep: for each reset epoch, the sparsest winning ticket, found in rounds of probes.

- lth.frontier.bracketing: where to probe next, narrowing and verifying (pure: no Hydra, tracker or training);
- lth.frontier.answer: what a line's probes say (pure);
- lth.frontier.cost: what a search costs before it runs, for lth.plan (pure);
- lth.frontier.judge: which probes won, by the report's own rule (reads MLflow);
- lth.frontier.outcome: the sweep's answer as a table, a JSON file and a figure;
- hydra_plugins.lth_frontier: the Hydra sweeper (`hydra/sweeper=lth_frontier`) that runs the rounds.
"""
