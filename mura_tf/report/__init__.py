"""What people read across runs: runs side by side (`comparison`) and report 002's Table 4
(`table`). One run's own page is `mura_tf.runs.page`, written by the run itself."""
