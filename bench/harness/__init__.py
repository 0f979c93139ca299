"""What every benchmark suite shares: paths, statistics, the seeded request set, the load
generator, the server processes under test, the peers' virtual environments, the in-process
pipeline measurements and the session's lock, log and machine record."""
