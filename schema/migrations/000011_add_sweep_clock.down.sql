DROP TABLE IF EXISTS sweep_clock;
