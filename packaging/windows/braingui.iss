; Inno Setup 6 script: the braingui installer for Windows, from the one-folder app in dist\braingui.
;   packaging\build.sh runs it when ISCC is on PATH; by hand (after the build):
;   "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 packaging\windows\braingui.iss
; Output: dist\braingui-<version>-windows-setup.exe. Per-user install by default (no admin rights needed);
; the installer offers an all-users install to administrators.
; A CUDA build (3-5 GB) needs DiskSpanning=yes below (setup.exe plus .bin slices).

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#define SourceDir AddBackslash(SourcePath) + "..\..\dist\braingui"
#define OutputDir AddBackslash(SourcePath) + "..\..\dist"

[Setup]
AppId={{4E0B6C52-2F5B-4C43-9D8E-6B1F2C7A9D31}
AppName=braingui
AppVersion={#AppVersion}
AppVerName=braingui {#AppVersion}
AppPublisher=braingui contributors
AppComments=Interpretable brain-tumour MRI analysis. Research software - not for clinical use.
DefaultDirName={autopf}\braingui
DefaultGroupName=braingui
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=braingui-{#AppVersion}-windows-setup
Compression=lzma2/max
SolidCompression=yes
LZMAUseSeparateProcess=yes
WizardStyle=modern
UninstallDisplayIcon={app}\braingui.exe
UninstallDisplayName=braingui {#AppVersion}

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; the whole one-folder app: braingui.exe (windowed), braingui-cli.exe (console: --version, --selftest,
; --no-gui) and _internal\ (Python, torch, Qt, the model bundles)
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; an upgrade replaces the whole runtime folder (no stale libraries from the previous version)
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\braingui"; Filename: "{app}\braingui.exe"; Comment: "Brain-tumour MRI analysis (research software)"
Name: "{autoprograms}\braingui self-test"; Filename: "{cmd}"; Parameters: "/k ""{app}\braingui-cli.exe"" --selftest"; WorkingDir: "{app}"
Name: "{autodesktop}\braingui"; Filename: "{app}\braingui.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\braingui.exe"; Description: "{cm:LaunchProgram,braingui}"; Flags: nowait postinstall skipifsilent
