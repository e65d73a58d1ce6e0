from tgdaemon.cli import main

raise SystemExit(main())
