from nmfuse.cli import main

raise SystemExit(main())
