"""The frontier sweep: for each reset epoch, the sparsest winning ticket, found in rounds of probes.

- lth.frontier.search: where to probe next (pure: no Hydra, tracker or training);
- lth.frontier.judge: which probes won, by the report's own rule (reads MLflow);
- lth.frontier.outcome: the sweep's answer as a table, a JSON file and a figure;
- hydra_plugins.lth_frontier: the Hydra sweeper (`hydra/sweeper=lth_frontier`) that runs the rounds.
"""
