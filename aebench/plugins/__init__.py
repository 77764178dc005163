"""Finding plugins: ``manager`` (entry points in, one registry per kind out, load errors kept),
``registry`` (register / get / list), ``params`` (a factory's signature as its schema),
``blame`` (which plugin raised) and ``listing`` (what ``aebench list`` shows, cached)."""
