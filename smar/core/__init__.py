"""The foundations every layer of smar stands on: the data contract, the configuration schema,
where each step reads and writes, the ranking metrics, tracking, progress, errors a user can
fix, and the set-up of a smar process. Nothing here imports any other part of smar."""
