"""What people read: a run's report page (`run`), runs side by side (`comparison`), report
002's Table 4 (`table`), the published figures quoted (`published`) and the plots (`plots`)."""
