DROP TABLE run_reach;
