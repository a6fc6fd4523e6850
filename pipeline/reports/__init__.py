"""Results and reports: results.csv read back and summarised, the report and its plots, the recipe's checks
measured, per-task statistics and uncertainty. Reads run folders; never runs one."""
