# Install CytoReview from this offline bundle on Windows: no network is used (pip --no-index).
# Written to mirror install.sh step by step; NOT run in CytoReview's CI (no Windows machine).
# The bundle must hold win_amd64 wheels for the Python in BUNDLE: build it on Linux with
# `installer/build-offline.sh --platform win_amd64 --variant cpu` (tests/install checks that
# bundle's wheels), or under Git Bash on Windows.
#   powershell -ExecutionPolicy Bypass -File install.ps1 [-Prefix DIR] [-NoShortcut]
param(
    [string]$Prefix = "$env:LOCALAPPDATA\CytoReview",
    [switch]$NoShortcut
)
$ErrorActionPreference = "Stop"
$here = Split-Path -Parent $MyInvocation.MyCommand.Path
function Say($text) { Write-Host "cytoreview install: $text" }

# The wheels were built for one Python (major.minor): BUNDLE says which. The py launcher finds it.
$want = ((Get-Content "$here\BUNDLE") | Where-Object { $_ -like "python=*" }) -replace "^python=", ""
$python = $env:PYTHON
if (-not $python) {
    try { $python = (& py "-$want" -c "import sys; print(sys.executable)").Trim() } catch { $python = $null }
}
if (-not $python) {
    Say "this bundle needs Python $want (python.org installer, or set PYTHON to its python.exe)"
    exit 1
}

$venv = Join-Path $Prefix "venv"
Say "creating $venv"
New-Item -ItemType Directory -Force -Path $Prefix | Out-Null
& $python -m venv --clear $venv
if ($LASTEXITCODE -ne 0) { Say "could not create the virtual environment"; exit 1 }

$log = Join-Path $Prefix "install.log"
& "$venv\Scripts\python.exe" -m pip install --no-index --find-links "$here\wheelhouse" `
    --disable-pip-version-check -c "$here\constraints.txt" -r "$here\requirements.txt" *> $log
if ($LASTEXITCODE -ne 0) {
    Get-Content $log -Tail 30
    Say "installation failed; the full log is $log"
    exit 1
}

# The launcher: cytoreview.cmd beside the venv; add $Prefix to PATH to type `cytoreview`.
$launcher = Join-Path $Prefix "cytoreview.cmd"
Set-Content -Path $launcher -Value "@`"$venv\Scripts\cytoreview.exe`" %*" -Encoding ASCII

if (-not $NoShortcut) {
    # A Start-menu shortcut: the Windows counterpart of the Linux desktop entry.
    $startMenu = Join-Path $env:APPDATA "Microsoft\Windows\Start Menu\Programs"
    $shell = New-Object -ComObject WScript.Shell
    $shortcut = $shell.CreateShortcut((Join-Path $startMenu "CytoReview.lnk"))
    $shortcut.TargetPath = "$venv\Scripts\cytoreview.exe"
    $shortcut.Arguments = "gui"
    $icon = Join-Path $here "resources\cytoreview.ico"
    if (Test-Path $icon) {
        Copy-Item $icon $Prefix
        $shortcut.IconLocation = Join-Path $Prefix "cytoreview.ico"
    }
    $shortcut.Save()
    Say "Start-menu shortcut: CytoReview"
}

$version = & "$venv\Scripts\cytoreview.exe" --version
Say "$version installed; run: $launcher gui"
