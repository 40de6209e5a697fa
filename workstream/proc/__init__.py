"""Worker processes: the child that runs handlers outside the server, and what the parent
needs to start it and talk to it (frames over one socket pair, the child's spec).

Nothing here knows actors or storage: the parent's supervisor is an actor
(`workstream.actors.process_worker`), the child is a plain program of threads.
"""
