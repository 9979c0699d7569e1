"""How the processes talk: one HTTP client (sync and async) and one server-side error middleware.

Imported by the Overlord, the MiddleManager, the peon and the tools; it imports the kernel
(``supervisor.errors``, ``supervisor.protocol``) and aiohttp, never ``overlord`` or ``middlemanager``.
"""
