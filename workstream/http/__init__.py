"""The HTTP API (Falcon), served by waitress. Depends on the `JobService` protocol only:
never on actors or stores."""
