DROP TABLE drift_measurements;
