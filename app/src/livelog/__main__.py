from livelog.cli import main

raise SystemExit(main())
