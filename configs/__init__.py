"""The YAML presets of every job, shipped inside the installed package: DQN presets here,
the GANs' in `gan/`, the language models' in `lm/` (read through `dqn.schema`)."""
